"""The search record of one request: candidates found and progress events, kept and streamed live."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from ponder.core.types import FinishReason, Sample, TraceEvent
from ponder.strategies.steps import extract_answer


@dataclass
class Candidate:
    """A complete solution a strategy produced, with what it knows about it."""

    text: str  # the whole assistant completion, think block included
    num_tokens: int
    finish_reason: FinishReason = "stop"
    score: float | None = None  # the verifier's (or the strategy's) score; higher is better
    step_scores: list[float] | None = None
    logprob: float | None = None  # cumulative sequence logprob, when the engine reported it
    answer: str | None = None  # the extracted answer votes and distinctness use
    id: int = -1

    def __post_init__(self) -> None:
        if self.answer is None:
            self.answer = extract_answer(self.text)

    @classmethod
    def of(cls, sample: Sample, extraction: str = "content") -> Candidate:
        """A whole-solution sample as a candidate, its answer extracted ``extraction``'s way (``None``: no vote)."""
        c = cls(sample.text, sample.num_tokens, sample.finish_reason, logprob=sample.cumulative_logprob)
        c.answer = extract_answer(sample.text, extraction)
        return c


class ProgressLine(str):
    """A progress line as it streams, carrying its structured event (``{"kind", ...data}``) for clients that draw it."""

    event: dict[str, Any]

    def __new__(cls, line: str, event: dict[str, Any]) -> ProgressLine:
        self = super().__new__(cls, line)
        self.event = event
        return self


class Trace:
    """Collects candidates and events; ``events()`` streams the progress lines while the search runs.

    Keeping the full event list is opt-in (``keep``), since only ``return_trace`` needs it.
    """

    def __init__(self, *, keep: bool = False, live: bool = False) -> None:
        self.keep = keep
        self.candidates: list[Candidate] = []
        self.events: list[TraceEvent] = []
        self._queue: asyncio.Queue[ProgressLine | None] | None = asyncio.Queue() if live else None

    def emit(self, kind: str, message: str = "", **data: Any) -> None:
        """Record one step of the search; ``message`` is the human-readable progress line."""
        if self.keep:
            self.events.append(TraceEvent(kind, {"message": message, **data} if message else data))
        if self._queue is not None and message:
            self._queue.put_nowait(ProgressLine(message, {"kind": kind, **data}))

    def add(self, candidate: Candidate, message: str | None = None) -> Candidate:
        """Register a finished candidate; the pool is what a search cut short by its budget returns from."""
        candidate.id = len(self.candidates)
        self.candidates.append(candidate)
        score = "" if candidate.score is None else f" (score {candidate.score:.3f})"
        self.emit(
            "candidate",
            message if message is not None else f"candidate {candidate.id + 1}: answer {candidate.answer}{score}",
            id=candidate.id,
            answer=candidate.answer,
            score=candidate.score,
            step_scores=candidate.step_scores,
            tokens=candidate.num_tokens,
            finish_reason=candidate.finish_reason,
        )
        return candidate

    def close(self) -> None:
        if self._queue is not None:
            self._queue.put_nowait(None)

    async def progress(self):
        """Progress lines as they are emitted, until :meth:`close`."""
        assert self._queue is not None, "Trace(live=True) streams progress"
        while (line := await self._queue.get()) is not None:
            yield line

    def public(self) -> list[dict[str, Any]]:
        return [{"kind": e.kind, **e.data} for e in self.events]
