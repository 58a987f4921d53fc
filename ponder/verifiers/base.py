"""Verifier helpers: describe one, its problem as messages or text, and the completion-to-steps splitter."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ponder.core.protocols import Problem, StepVerifier, Verifier, is_step_verifier
from ponder.core.reasoning import THINK_TAGS

__all__ = [
    "Problem",
    "StepVerifier",
    "Verifier",
    "VerifierInfo",
    "describe",
    "is_step_verifier",
    "problem_messages",
    "problem_text",
    "split_completion",
    "split_steps",
]


@dataclass(frozen=True)
class VerifierInfo:
    """What the server tells about a loaded verifier (``/v1/verifiers``, the ``ponder`` block, logs)."""

    name: str
    kind: str  # orm, prm, math_rule, llm_judge, policy, ensemble, or the class name for others
    is_step: bool
    source: str | None = None  # the folder or file it was loaded from

    def as_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "is_step": self.is_step, "source": self.source}


def describe(verifier: Verifier) -> VerifierInfo:
    """The :class:`VerifierInfo` of any verifier (``kind`` and ``source`` attributes are optional)."""
    kind = getattr(verifier, "kind", None) or type(verifier).__name__
    return VerifierInfo(verifier.name, kind, is_step_verifier(verifier), getattr(verifier, "source", None))


def problem_messages(problem: Problem) -> list[dict]:
    """The problem as chat messages: a plain text prompt becomes one user turn."""
    if isinstance(problem, str):
        return [{"role": "user", "content": problem}]
    return [dict(m) for m in problem]


def problem_text(problem: Problem) -> str:
    """The problem as plain text: the last user turn of a chat (the question being answered)."""
    if isinstance(problem, str):
        return problem
    for message in reversed(list(problem)):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return message["content"]
    return "\n".join(str(m.get("content", "")) for m in problem)


def split_completion(text: str, think_tags: Sequence[str] = THINK_TAGS) -> tuple[str, str, bool]:
    """``(reasoning, content, closed)`` of a completion.

    The opening tag is optional (the prompt may have opened the block); an unclosed block makes
    everything reasoning. ``closed`` is True when the closing tag was seen or no block was opened at all.
    """
    opener, closer = think_tags
    body = text.lstrip()
    opened = body.startswith(opener)
    if opened:
        body = body[len(opener) :]
    reasoning, tag, content = body.partition(closer)
    if tag:
        return reasoning, content, True
    if opened:
        return body, "", False
    return "", text, True


def split_steps(text: str, separator: str = "\n", think_tags: Sequence[str] = THINK_TAGS) -> list[str]:
    """The reasoning steps of a completion: non-empty, stripped pieces between separators.

    Steps come from the think block when there is reasoning; a completion that does not think
    (or thinks nothing) is split in its visible content instead, so a direct answer is one step.
    """
    reasoning, content, _ = split_completion(text, think_tags)
    source = reasoning if reasoning.strip() else content
    return [piece.strip() for piece in source.split(separator) if piece.strip()]
