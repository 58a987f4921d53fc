"""The ``Verifier`` / ``StepVerifier`` protocols, a describe helper and the completion-to-steps splitter."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

THINK_TAGS = ("<think>", "</think>")
Problem = Sequence[dict] | str


@runtime_checkable
class Verifier(Protocol):
    """Scores whole answers, batch-first; higher is better.

    ``problem`` is the request's chat messages (or a plain text prompt); ``answers`` are full
    assistant completions as the policy wrote them, e.g. ``"<think>2+3=5\\n</think>5"``.
    """

    name: str

    async def score(self, problem: Problem, answers: Sequence[str], reference: str | None = None) -> list[float]: ...


@runtime_checkable
class StepVerifier(Verifier, Protocol):
    """A verifier that also scores every reasoning step of partial or whole solutions."""

    async def score_steps(self, problem: Problem, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        """One score per step per solution (steps without separators)."""
        ...


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


def is_step_verifier(verifier: object) -> bool:
    """Whether ``verifier`` can score single steps (a :class:`StepVerifier`)."""
    return callable(getattr(verifier, "score_steps", None))


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
