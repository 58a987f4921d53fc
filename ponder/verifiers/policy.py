"""A content policy from a YAML/JSON spec: forbidden and required patterns, a length cap, the refusal to send."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ponder.core.reasoning import THINK_TAGS
from ponder.verifiers.base import Problem, split_completion
from ponder.verifiers.hf import VerifierLoadError

DEFAULT_REFUSAL = "I can't help with that request."
KEYS = ("forbidden", "required", "max_chars", "refusal", "ignore_case")


class PolicySpecError(VerifierLoadError):
    """A policy spec file that is missing, unreadable or malformed."""


@dataclass(frozen=True)
class Violation:
    """One broken rule: which (a model spec's rule id, a policy's name) and why."""

    rule: str
    reason: str


def compile_pattern(item: Any, where: str, flags: int) -> tuple[re.Pattern[str], str]:
    """A compiled pattern and how to name it: a string is a regex, ``{literal: text}`` a literal string."""
    if isinstance(item, dict) and set(item) == {"literal"} and isinstance(item["literal"], str) and item["literal"]:
        return re.compile(re.escape(item["literal"]), flags), repr(item["literal"])
    if isinstance(item, dict) and set(item) == {"regex"}:
        item = item["regex"]
    if not isinstance(item, str) or not item:
        raise PolicySpecError(
            f"{where}: each entry must be a non-empty regex string or {{literal: TEXT}}, got {item!r}"
        )
    try:
        return re.compile(item, flags), f"/{item}/"
    except re.error as exc:
        raise PolicySpecError(f"{where}: invalid regular expression {item!r}: {exc}") from None


class PolicyVerifier:
    """Scores 1.0 for a compliant answer, 0.0 for a violating one; ``violations`` says what was broken.

    Spec keys (unknown keys are an error):
    - ``forbidden``: patterns that must not appear anywhere in the completion (reasoning included);
    - ``required``: patterns the visible content must match (each one, searched);
    - ``max_chars``: the longest visible content allowed;
    - ``refusal``: the text the server returns when every candidate violates the policy;
    - ``ignore_case``: match case-insensitively (default true).
    A pattern is a regular expression string, or ``{literal: TEXT}`` for a literal string.
    """

    step_level = False

    kind = "policy"

    def __init__(self, spec: dict[str, Any], *, name: str = "policy", source: str | None = None) -> None:
        where = source or "policy spec"
        if not isinstance(spec, dict):
            raise PolicySpecError(f"{where}: must be a mapping with keys {', '.join(KEYS)}; got {type(spec).__name__}")
        unknown = sorted(set(spec) - set(KEYS))
        if unknown:
            raise PolicySpecError(f"{where}: unknown key(s) {unknown}; valid: {', '.join(KEYS)}")
        ignore_case = spec.get("ignore_case", True)
        if not isinstance(ignore_case, bool):
            raise PolicySpecError(f"{where}: ignore_case must be true or false")
        flags = re.IGNORECASE if ignore_case else 0
        lists = {}
        for key in ("forbidden", "required"):
            items = spec.get(key) or []
            if not isinstance(items, list):
                raise PolicySpecError(f"{where}: {key} must be a list of patterns")
            lists[key] = [compile_pattern(item, f"{where}: {key}[{i}]", flags) for i, item in enumerate(items)]
        max_chars = spec.get("max_chars")
        if max_chars is not None and (isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1):
            raise PolicySpecError(f"{where}: max_chars must be a positive integer, got {max_chars!r}")
        refusal = spec.get("refusal", DEFAULT_REFUSAL)
        if not isinstance(refusal, str) or not refusal.strip():
            raise PolicySpecError(f"{where}: refusal must be a non-empty string")
        self.name = name
        self.source = source
        self.forbidden = lists["forbidden"]
        self.required = lists["required"]
        self.max_chars: int | None = max_chars
        self.refusal: str = refusal

    @classmethod
    def from_file(cls, path: str | Path, *, name: str = "policy") -> PolicyVerifier:
        """Load a ``.yaml`` / ``.yml`` / ``.json`` spec; a clear error for a missing or malformed file."""
        file = Path(path)
        if not file.is_file():
            raise PolicySpecError(
                f"policy spec {file} does not exist" if not file.exists() else f"{file} is not a file"
            )
        try:
            text = file.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicySpecError(f"cannot read policy spec {file}: {exc}") from None
        return cls(load_mapping(file, text), name=name, source=str(file))

    def violations(self, text: str) -> list[str]:
        """What ``text`` (a whole completion) breaks; empty when it complies."""
        _, content, _ = split_completion(text, THINK_TAGS)
        found = [f"contains forbidden {label}" for pattern, label in self.forbidden if pattern.search(text)]
        found += [f"does not match required {label}" for pattern, label in self.required if not pattern.search(content)]
        if self.max_chars is not None and len(content) > self.max_chars:
            found.append(f"is {len(content)} characters long, more than max_chars {self.max_chars}")
        return found

    def request_violations(self, problem: Problem) -> list[Violation]:
        """A content policy judges answers only; a request never breaks it."""
        return []

    async def check(self, problem: Problem, answers: Sequence[str]) -> list[list[Violation]]:
        """What each answer breaks, named by this policy (the interface the server's content filter calls)."""
        return [[Violation(self.name, why) for why in self.violations(answer)] for answer in answers]

    async def score(self, problem: Problem, answers: Sequence[str], reference: str | None = None) -> list[float]:
        """1.0 per compliant answer, 0.0 per violating one."""
        return [0.0 if self.violations(answer) else 1.0 for answer in answers]


def load_mapping(file: Path, text: str) -> Any:
    """The mapping a ``.yaml`` / ``.yml`` / ``.json`` file holds; a :class:`PolicySpecError` when it does not parse."""
    suffix = file.suffix.lower()
    if suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise PolicySpecError(f"{file}: reading YAML needs pyyaml, which is not installed; use JSON") from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PolicySpecError(f"{file} is not valid YAML: {exc}") from None
    if suffix == ".json":
        import json

        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise PolicySpecError(f"{file} is not valid JSON: {exc}") from None
    raise PolicySpecError(f"{file}: unsupported policy spec format {suffix!r}; use .yaml, .yml or .json")
