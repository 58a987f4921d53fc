"""The ``ponder`` block as an ``x-ponder`` response header, for clients that keep headers but drop unknown body fields.

LangChain's ``ChatOpenAI`` (and ``ChatDeepSeek``, its subclass) keep only OpenAI's own body fields; with
``include_response_headers=True`` they put the response headers in ``response_metadata["headers"]``.
"""

from __future__ import annotations

import json
from typing import Any

HEADER = "x-ponder"
MAX_BYTES = 8192  # well under common proxies' header limits (8-16 KB for all headers)
_CORE_KEYS = ("strategy", "verifier", "effort", "budget", "budget_clamped", "spent", "scores", "exhausted")


def ponder_header(block: dict[str, Any] | None) -> dict[str, str]:
    """``{"x-ponder": compact JSON}`` of a whole response's block, without the trace; the core keys if it is large."""
    if not block:
        return {}
    value = _dumps({k: v for k, v in block.items() if k != "trace"})
    if len(value) > MAX_BYTES:
        value = _dumps({k: block[k] for k in _CORE_KEYS if k in block})
    return {HEADER: value} if len(value) <= MAX_BYTES else {}


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=True, default=str)
