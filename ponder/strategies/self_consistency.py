"""The ``self_consistency`` strategy: sample in rounds, vote over extracted answers, stop once the vote is settled."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from ponder.core.errors import InvalidRequestError
from ponder.core.protocols import Engine, Verifier
from ponder.strategies.base import Options, Search, Strategy, StrategyResult, best_distinct
from ponder.strategies.best_of_n import (
    MAX_SAMPLES,
    Extraction,
    WeightTransform,
    sample_count,
    top_votes,
    vote_weights,
    winners,
)
from ponder.strategies.registry import register
from ponder.strategies.sampling import draw
from ponder.strategies.scoring import score_candidates
from ponder.strategies.trace import Candidate
from ponder.strategies.voting import is_decisive, tally


@dataclass
class SelfConsistencyResult(StrategyResult):
    """A vote's outcome: weight and count per answer, samples drawn and whether the vote stopped early."""

    weighting: str = "none"
    votes: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    samples: int = 0
    planned: int = 0
    stopped_early: bool = False
    stop_reason: str | None = None  # "decisive" or "agreement" when it stopped early

    def summary(self) -> dict[str, Any]:
        top = list(self.votes.items())[:10]
        return {
            "weighting": self.weighting,
            "votes": {a: (self.counts[a] if self.weighting == "none" else round(w, 6)) for a, w in top},
            "counts": {a: self.counts[a] for a, _ in top},
            "samples": self.samples,
            "planned_samples": self.planned,
            "stopped_early": self.stopped_early,
            "stop_reason": self.stop_reason,
        }


@register("self_consistency")
class SelfConsistency(Strategy):
    """Self-consistency (Wang et al. 2023, "Self-Consistency Improves Chain of Thought Reasoning").

    Samples N solutions and returns the answer most of them reach: a plain majority, or votes weighted by
    the verifier's score or by the solution's own probability (exp of its mean token logprob, in (0, 1]).
    Sampling goes in rounds of ``round_size`` and stops early, as in Adaptive-Consistency (Aggarwal et al.
    2023), once the leader cannot be caught by the samples left (which never changes the outcome), or
    once it holds ``stop_agreement`` of the vote after ``min_samples`` (a heuristic; off with null).
    Solutions without an extractable answer cast no vote.
    """

    class Options(Options):
        n_samples: int | None = Field(
            None,
            ge=1,
            le=MAX_SAMPLES,
            description="N, most solutions to draw; default budget.max_samples, else 16 (capped by the budget).",
        )
        answer_extraction: Extraction = Field(
            "content", description="The answer voted for: the visible content, its last number, or its last \\boxed{}."
        )
        weighting: Literal["none", "verifier", "logprob"] = Field(
            "none",
            description="none: one vote each; verifier: the verifier's score; logprob: exp(mean token logprob).",
        )
        aggregation: Literal["min", "prod", "last", "mean"] = Field(
            "min", description="weighting=verifier with a step verifier (PRM): step scores -> one score."
        )
        weight_transform: WeightTransform = Field(
            "auto",
            description="weighting=verifier: scores -> weights; auto: sigmoid when a score lies outside [0, 1].",
        )
        round_size: int = Field(4, ge=1, le=MAX_SAMPLES, description="Samples drawn per round between vote checks.")
        stop_agreement: float | None = Field(
            0.8,
            gt=0.5,
            le=1.0,
            description="Stop once the leader holds this share of the vote (after min_samples); null: never.",
        )
        min_samples: int = Field(
            8, ge=1, le=MAX_SAMPLES, description="Samples drawn before stop_agreement may end the vote."
        )

    def __init__(self, options: BaseModel | None = None) -> None:
        super().__init__(options)
        # only a verifier-weighted vote needs a verifier; the class attribute stays False for the server's listing
        self.needs_verifier = self.options.weighting == "verifier"

    Result = SelfConsistencyResult
    keeps_constraints = True

    def check(self, engine: Engine, verifier: Verifier | None) -> None:
        super().check(engine, verifier)
        if self.options.weighting == "logprob" and not engine.capabilities.logprobs:
            raise InvalidRequestError(
                "self_consistency with weighting='logprob' needs token logprobs; this engine does not return them.",
                param="strategy_options",
            )

    async def explore(self, search: Search[SelfConsistencyResult]) -> list[Candidate]:
        o, trace, result = self.options, search.trace, search.result
        total = result.planned = sample_count(o.n_samples, search.budget)
        params = search.request.params
        if o.weighting == "logprob" and params.logprobs is None:
            params = dataclasses.replace(params, logprobs=0)  # only the sampled token's logprob
        pool: list[Candidate] = []
        while len(pool) < total:
            batch = await draw(
                search, params, min(o.round_size, total - len(pool)), o.answer_extraction, first=not pool
            )
            if not batch:
                break  # vote with the rounds already drawn
            if o.weighting == "verifier":
                await score_candidates(search.verifier, search.request, batch, o.aggregation)
            pool += batch
            votes, counts = self._votes(pool), _counts(pool)
            trace.emit(
                "votes",
                f"votes after {len(pool)}: {top_votes(votes, counts, o.weighting != 'none')}",
                votes=votes,
                counts=counts,
                samples=len(pool),
            )
            reason = self._settled(votes, pool, total - len(pool), search.request.n)
            if reason and len(pool) < total:
                result.stopped_early, result.stop_reason = True, reason
                leader = next(iter(votes))
                why = "cannot be overtaken" if reason == "decisive" else f"holds {_share(votes):.0%} of the vote"
                trace.emit(
                    "early_stop",
                    f"stopping after {len(pool)} of {total} samples: {leader} {why}",
                    reason=reason,
                    samples=len(pool),
                )
                break
        return self.select(pool, search.request.n)

    def select(self, candidates: Sequence[Candidate], n: int) -> list[Candidate]:
        """The ``n`` most-voted answers, each as its best solution (highest score or probability, else the first)."""
        votes = self._votes(candidates)
        if not votes:
            return best_distinct(candidates, n, key=self._within)
        return winners(candidates, votes, n, key=self._within)

    def fallback(self, candidates: Sequence[Candidate], n: int, result: SelfConsistencyResult) -> list[Candidate]:
        return self.select(candidates, n)

    def finish(
        self, result: SelfConsistencyResult, choices: list[Candidate], exhausted: str | None
    ) -> SelfConsistencyResult:
        """The vote over the whole pool."""
        pool = result.trace.candidates
        result.weighting, result.samples = self.options.weighting, len(pool)
        result.votes, result.counts = self._votes(pool), _counts(pool)
        return super().finish(result, choices, exhausted)

    def _settled(self, votes: dict[str, float], pool: Sequence[Candidate], remaining: int, n: int) -> str | None:
        """Why the vote can stop now: ``decisive`` (no remaining samples can change the top ``n``) or ``agreement``."""
        if not votes:
            return None
        ranked = list(votes.values())
        # one more sample adds at most 1 vote: counts, probabilities in (0, 1] and sigmoid/[0, 1] weights alike
        cap = max([1.0, *self._weights(pool)])
        if len(ranked) >= n and is_decisive(
            {"in": ranked[n - 1], "out": ranked[n] if len(ranked) > n else 0.0}, remaining * cap
        ):
            return "decisive"
        o = self.options
        if n == 1 and o.stop_agreement is not None and len(pool) >= o.min_samples and _share(votes) >= o.stop_agreement:
            return "agreement"
        return None

    def _weights(self, candidates: Sequence[Candidate]) -> list[float]:
        how = self.options.weighting
        if how == "verifier":
            return vote_weights([c.score for c in candidates], self.options.weight_transform)
        if how == "logprob":
            return [_probability(c) for c in candidates]
        return [1.0] * len(candidates)

    def _votes(self, candidates: Sequence[Candidate]) -> dict[str, float]:
        return tally([c.answer for c in candidates], self._weights(candidates))

    def _within(self, c: Candidate) -> tuple[float, float, float, int]:
        """Best representative of an answer: finished, then highest score, then most probable, then earliest."""
        return (
            1.0 if c.finish_reason == "stop" else 0.0,
            c.score if c.score is not None else float("-inf"),
            _probability(c) if c.logprob is not None else float("-inf"),
            -c.id,
        )


def _probability(c: Candidate) -> float:
    """exp(mean token logprob): the geometric-mean token probability, in (0, 1], fair across lengths."""
    if c.logprob is None or c.num_tokens <= 0:
        return 0.0
    return math.exp(min(c.logprob / c.num_tokens, 0.0))


def _share(votes: dict[str, float]) -> float:
    total = sum(votes.values())
    return next(iter(votes.values())) / total if total > 0 else 0.0


def _counts(candidates: Sequence[Candidate]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for c in candidates:
        if c.answer is not None:
            counts[c.answer] = counts.get(c.answer, 0) + 1
    return counts
