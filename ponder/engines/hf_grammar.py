"""Constrained decoding for the transformers engine: xgrammar's logits processor over the model's tokenizer."""

from __future__ import annotations

import functools
import importlib.util
import threading
from typing import Any

from ponder.core.errors import InvalidRequestError
from ponder.core.types import StructuredOutput

_OBJECT = '{"type": "object"}'


def available() -> bool:
    """Whether xgrammar is installed (``pip install ponder[hf]`` brings it)."""
    return importlib.util.find_spec("xgrammar") is not None


class Grammars:
    """Compiles constraints for one tokenizer (cached) and makes the per-``generate`` logits processor."""

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        import xgrammar as xgr

        self._xgr = xgr
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        self._compiler = xgr.GrammarCompiler(info)
        self._lock = threading.Lock()
        self._compile = functools.lru_cache(maxsize=64)(self._compile_uncached)

    def _compile_uncached(self, schema: str) -> Any:
        # compact JSON, as the vLLM engine is started with: free whitespace lets a small model pad to max_tokens
        return self._compiler.compile_json_schema(schema, any_whitespace=False, separators=(",", ":"))

    def processor(self, structured: StructuredOutput) -> Any:
        """A fresh logits processor for one ``generate`` call (xgrammar's processors are single-use)."""
        from xgrammar.contrib.hf import LogitsProcessor

        schema = _OBJECT if structured.json_object else structured.json_schema or _OBJECT
        try:
            with self._lock:
                compiled = self._compile(schema)
        except Exception as exc:  # xgrammar refuses schemas it cannot compile
            raise InvalidRequestError(f"The JSON schema cannot be compiled: {exc}", param="response_format") from exc
        return LogitsProcessor(compiled)
