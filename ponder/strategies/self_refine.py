"""The ``self_refine`` strategy: draft, let the model critique its own draft, revise, until a verifier accepts."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from ponder.core.errors import PromptTooLongError
from ponder.core.types import Prompt
from ponder.strategies.base import Options, Search, Strategy, StrategyResult, best_distinct
from ponder.strategies.meter import BudgetExhausted
from ponder.strategies.registry import register
from ponder.strategies.scoring import score_candidates
from ponder.strategies.steps import visible_answer
from ponder.strategies.trace import Candidate, Trace

DEFAULT_ITERATIONS = 3  # rounds when neither the options nor the budget say how many
MAX_ITERATIONS = 1000
DEFAULT_CRITIQUE = (
    "Review your answer above step by step and point out any mistake. "
    'If it is entirely correct, begin your reply with the word "correct".'
)
DEFAULT_REVISE = (
    "Revise your answer to the original question using this feedback. "
    "Give the complete corrected solution and the final answer."
)


def iteration_count(option: int | None, max_samples: int | None) -> int:
    """Rounds after the first draft: the option, else ``(max_samples - 1) // 2``, else 3; capped by the budget.

    The first draft costs one sample and each round two (critique + revision), so a round is only started
    when the budget can pay for both.
    """
    affordable = None if max_samples is None else max(0, (max_samples - 1) // 2)
    wanted = option if option is not None else (affordable if affordable is not None else DEFAULT_ITERATIONS)
    return wanted if affordable is None else min(wanted, affordable)


def says(text: str, phrase: str) -> bool:
    """Whether the visible part of ``text`` opens with ``phrase`` as whole words ("Correct." yes, "Incorrect" no)."""
    pattern = r"^[\W_]*" + r"\s+".join(map(re.escape, phrase.split())) + r"(?!\w)"
    return re.match(pattern, visible_answer(text), re.IGNORECASE) is not None


def turn(prompt: Prompt, exchange: Sequence[tuple[str, str]]) -> Prompt:
    """The request's conversation followed by further (role, content) turns, ready for a fresh assistant turn."""
    if prompt.messages is not None:
        return Prompt.chat([*prompt.messages, *({"role": r, "content": c} for r, c in exchange)])
    # A raw completion prompt has no roles: the turns are appended as paragraphs.
    return Prompt.raw(prompt.text + "".join(c if r == "assistant" else f"\n\n{c}\n\n" for r, c in exchange))


@dataclass
class SelfRefineResult(StrategyResult):
    """How the refinement went: rounds run, whether a draft was accepted, and each draft's score."""

    iterations: int = 0
    accepted: bool = False
    stop_reason: str | None = None  # accepted | critique_approved | max_iterations | budget | context_full
    draft_scores: list[float | None] = field(default_factory=list)
    best_draft: int | None = None  # 1-based index of the draft returned first

    def summary(self) -> dict[str, Any]:
        return {
            "iterations": self.iterations,
            "accepted": self.accepted,
            "stop_reason": self.stop_reason,
            "drafts": len(self.draft_scores),
            "draft_scores": self.draft_scores,
            "best_draft": self.best_draft,
        }


@register("self_refine")
class SelfRefine(Strategy):
    """Self-Refine (Madaan et al. 2023, "Self-Refine: Iterative Refinement with Self-Feedback").

    One draft, then rounds of: the model critiques its latest draft in a new chat turn (the request's
    messages + the draft + ``critique_prompt``), then revises it (… + the critique + ``revise_prompt``).
    Every draft is scored; refinement stops at the first draft whose score reaches ``accept_threshold``,
    or, without a verifier, when a critique opens with ``stop_phrase``, or after ``max_iterations`` rounds
    or when the budget ends. The best-scored draft is returned (a revision can be worse than its source);
    among equal or missing scores the latest draft wins.
    """

    samples_candidates = False  # one draft at a time: a greedy request refines greedily

    class Options(Options):
        max_iterations: int | None = Field(
            None,
            ge=0,
            le=MAX_ITERATIONS,
            description="Critique-and-revise rounds after the first draft, 2 samples each; default "
            "(budget.max_samples - 1) // 2, else 3; always capped to what budget.max_samples pays for.",
        )
        accept_threshold: float = Field(
            0.5,
            allow_inf_nan=False,
            description="Stop at the first draft the verifier scores at least this high (on the verifier's scale).",
        )
        aggregation: Literal["min", "prod", "last", "mean"] = Field(
            "min", description="How a step verifier's (PRM's) step scores become one score per draft."
        )
        critique_prompt: str = Field(
            DEFAULT_CRITIQUE, min_length=1, max_length=4000, description="The user turn asking for a critique."
        )
        revise_prompt: str = Field(
            DEFAULT_REVISE, min_length=1, max_length=4000, description="The user turn asking for a revision."
        )
        stop_phrase: str | None = Field(
            "correct",
            min_length=1,
            max_length=200,
            pattern=r"\S",
            description="Without a verifier: stop when a critique's visible text opens with this (case-insensitive); "
            "null: never.",
        )

    Result = SelfRefineResult

    async def explore(self, search: Search[SelfRefineResult]) -> list[Candidate]:
        o, trace, result = self.options, search.trace, search.result
        try:
            await self._refine(search, iteration_count(o.max_iterations, search.engine.meter.limit("max_samples")))
        except BudgetExhausted:
            if not trace.candidates:
                raise
            result.stop_reason = "budget"
        except PromptTooLongError:
            if not trace.candidates:  # the request itself does not fit: the user's error
                raise
            # each round's chat is longer than the last; once it outgrows the context, refinement is over
            result.stop_reason = "context_full"
            trace.emit("context", "the refinement chat no longer fits the model's context; keeping the best draft")
        return self.fallback(trace.candidates, search.request.n, result)

    async def _refine(self, search: Search[SelfRefineResult], rounds: int) -> None:
        """Draft, then critique and revise until a draft is accepted or no round is left."""
        o, trace, result, verifier, prompt = (
            self.options,
            search.trace,
            search.result,
            search.verifier,
            search.request.prompt,
        )
        draft = await self._draft(search, prompt)
        while True:
            if verifier is not None and draft.score is not None and draft.score >= o.accept_threshold:
                result.accepted, result.stop_reason = True, "accepted"
                return self._say(trace, draft, "accepted")
            if result.iterations >= rounds:
                result.stop_reason = "max_iterations"
                return self._say(trace, draft, "no rounds left" if rounds else "no refinement in this budget")
            self._say(trace, draft, "critiquing" if verifier is None else "revising")
            result.iterations += 1
            ask = [("assistant", prompt.prefix + draft.text), ("user", o.critique_prompt)]
            critique = (await self._sample(search, turn(prompt, ask))).text
            approved = verifier is None and o.stop_phrase is not None and says(critique, o.stop_phrase)
            trace.emit(
                "critique",
                f"critique {result.iterations}: {_gist(critique)} — {'approved' if approved else 'revising'}",
                iteration=result.iterations,
                draft=draft.id,
                text=critique,
                approved=approved,
            )
            if approved:
                result.accepted, result.stop_reason = True, "critique_approved"
                return None
            ask += [("assistant", critique), ("user", o.revise_prompt)]
            draft = await self._draft(search, turn(prompt, ask))

    @staticmethod
    async def _sample(search: Search, prompt: Prompt) -> Candidate:
        samples = await search.engine.generate(prompt, search.request.params, 1)
        if not samples:  # the meter admitted nothing
            raise BudgetExhausted(search.engine.meter.exhausted or "max_samples")
        return Candidate.of(samples[0])

    async def _draft(self, search: Search, prompt: Prompt) -> Candidate:
        draft = search.trace.add(await self._sample(search, prompt), message="")
        await score_candidates(search.verifier, search.request, [draft], self.options.aggregation)
        return draft

    def _say(self, trace: Trace, draft: Candidate, then: str) -> None:
        score = "" if draft.score is None else f", score {draft.score:.3f}"
        trace.emit(
            "draft",
            f"draft {draft.id + 1}: answer {draft.answer}{score} — {then}",
            id=draft.id,
            answer=draft.answer,
            score=draft.score,
            step_scores=draft.step_scores,
            tokens=draft.num_tokens,
        )

    def fallback(self, candidates: Sequence[Candidate], n: int, result: SelfRefineResult) -> list[Candidate]:
        return best_distinct(candidates, n, key=_latest_best)

    def finish(self, result: SelfRefineResult, choices: list[Candidate], exhausted: str | None) -> SelfRefineResult:
        result.stop_reason = result.stop_reason or ("budget" if exhausted else None)
        result.draft_scores = [c.score for c in result.trace.candidates]
        result.best_draft = choices[0].id + 1 if choices and choices[0].id >= 0 else None
        return super().finish(result, choices, exhausted)


def _latest_best(c: Candidate) -> tuple[float, float, int]:
    """Finished first, then the highest score, then the latest draft (refinement is presumed to help on ties)."""
    return (1.0 if c.finish_reason == "stop" else 0.0, c.score if c.score is not None else float("-inf"), c.id)


def _gist(text: str, width: int = 80) -> str:
    """A critique in one short line for the progress stream."""
    line = " ".join(visible_answer(text).split()) or " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"
