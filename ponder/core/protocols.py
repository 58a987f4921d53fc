"""The contracts production code is typed against: ``Engine``, ``Verifier`` and ``StepVerifier``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol, runtime_checkable

from ponder.core.types import EngineCapabilities, Prompt, Sample, SampleDelta, SamplingParams


@runtime_checkable
class Engine(Protocol):
    """One served model; every method is safe to call concurrently.

    Cancelling the task awaiting ``generate`` (or closing the ``stream`` iterator)
    aborts the underlying requests.
    """

    model_id: str
    capabilities: EngineCapabilities

    async def generate(self, prompt: Prompt, params: SamplingParams, n: int = 1) -> list[Sample]:
        """``n`` finished samples of one prompt, in one engine call."""
        ...

    def stream(self, prompt: Prompt, params: SamplingParams, n: int = 1) -> AsyncIterator[SampleDelta]:
        """Deltas of ``n`` samples as they are generated; each sample ends with a delta carrying ``finish_reason``."""
        ...

    async def score(self, prompt: Prompt, continuation: str) -> list[float]:
        """Logprob of each token of ``continuation`` after ``prompt``."""
        ...

    def num_unfinished_requests(self) -> int:
        """Requests started and not finished yet (the ``/metrics`` gauge of work inside the engine)."""
        ...

    async def aclose(self) -> None:
        """Release the engine's resources."""
        ...


Problem = Sequence[dict] | str


@runtime_checkable
class Verifier(Protocol):
    """Scores whole answers, batch-first; higher is better.

    ``problem`` is the request's chat messages (or a plain text prompt); ``answers`` are full
    assistant completions as the policy wrote them, e.g. ``"<think>2+3=5\\n</think>5"``.
    """

    name: str
    step_level: bool  # True when it also implements ``score_steps`` (a StepVerifier); declared, never probed

    async def score(self, problem: Problem, answers: Sequence[str], reference: str | None = None) -> list[float]: ...


@runtime_checkable
class StepVerifier(Verifier, Protocol):
    """A verifier that also scores every reasoning step of partial or whole solutions."""

    async def score_steps(self, problem: Problem, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        """One score per step per solution (steps without separators). A verifier that declares
        ``scores_answer = True`` also reads a finished solution's answer, given as its last item, ``</think>ANSWER``
        (:func:`scores_answer`); the others are never given one."""
        ...


def scores_answer(verifier: object) -> bool:
    """Whether a step verifier also scores a finished solution's answer (its last item, ``</think>ANSWER``)."""
    return bool(getattr(verifier, "scores_answer", False))


def is_step_verifier(verifier: object) -> bool:
    """Whether ``verifier`` scores single steps: it declares ``step_level`` (a :class:`StepVerifier` does)."""
    return bool(getattr(verifier, "step_level", False))
