"""The ``best_of_n`` strategy: sample N solutions, score them with the verifier, keep the best (or weighted) answers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from ponder.core.types import Budget
from ponder.strategies.base import Options, Search, Strategy, StrategyResult, best_distinct, rank_key
from ponder.strategies.registry import register
from ponder.strategies.sampling import draw, draw_scored
from ponder.strategies.scoring import confident, score_candidates, stop_score_field
from ponder.strategies.trace import Candidate
from ponder.strategies.voting import tally

DEFAULT_SAMPLES = 16  # N when neither the options nor the budget say how many
ADAPTIVE_CHUNK = 4  # samples a chunk when stop_score is set and batch_size is not: the probe's size
MAX_SAMPLES = 4096
Extraction = Literal["content", "last_number", "boxed"]
WeightTransform = Literal["auto", "identity", "sigmoid"]


def sample_count(n_samples: int | None, budget: Budget) -> int:
    """N: the option, else the budget's ``max_samples``, else 16; never more than the budget allows."""
    n = n_samples or budget.max_samples or DEFAULT_SAMPLES
    return min(n, budget.max_samples) if budget.max_samples is not None else n


def vote_weights(scores: Sequence[float | None], transform: str = "auto") -> list[float]:
    """Non-negative vote weights from verifier scores; an unscored candidate weighs 0.

    Summing scores only makes sense for probabilities: an ORM's raw logits can be negative, so
    ``auto`` maps every score through a sigmoid as soon as one lies outside [0, 1] (one rule for the
    whole pool, so the weights stay comparable), and leaves probabilities (PRM, rule, judge) as they are.
    """
    known = [s for s in scores if s is not None]
    if transform == "auto":
        transform = "sigmoid" if any(s < 0.0 or s > 1.0 for s in known) else "identity"
    if transform == "sigmoid":
        return [0.0 if s is None else 1.0 / (1.0 + math.exp(-max(min(s, 60.0), -60.0))) for s in scores]
    return [0.0 if s is None else max(s, 0.0) for s in scores]


def top_votes(votes: dict[str, float], counts: dict[str, int], weighted: bool, k: int = 5) -> str:
    """``1401 x5, 1301 x2`` (or ``1401 2.71 (x3)`` when weighted), the leaders first."""
    parts = [f"{a} {w:.2f} (x{counts[a]})" if weighted else f"{a} x{counts[a]}" for a, w in list(votes.items())[:k]]
    if len(votes) > k:
        parts.append(f"+{len(votes) - k} more")
    return ", ".join(parts) or "no extractable answer"


def winners(candidates: Sequence[Candidate], votes: dict[str, float], n: int, key=rank_key) -> list[Candidate]:
    """The top ``n`` answers of ``votes``, each as its best candidate; other candidates fill in when too few."""
    chosen = []
    for answer in list(votes)[:n]:
        chosen.append(max((c for c in candidates if c.answer == answer), key=key))
    if len(chosen) < n:
        chosen += [c for c in best_distinct(candidates, len(candidates), key) if c not in chosen][: n - len(chosen)]
    return chosen


@dataclass
class BestOfNResult(StrategyResult):
    """A best-of-N result with the per-answer ranking it chose from."""

    selection: str = "best"
    samples: int = 0
    confident: bool = False  # stopped early: a candidate reached stop_score
    ranking: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "selection": self.selection,
            "samples": self.samples,
            "confident": self.confident,
            "ranking": self.ranking[:10],
        }


@register("best_of_n")
class BestOfN(Strategy):
    """Best-of-N reranking: draw N solutions in one batched engine call, score them in one verifier call.

    ``best`` keeps the highest-scored solution (Cobbe et al. 2021, "Training Verifiers to Solve Math Word
    Problems"); ``weighted`` sums the scores of the solutions sharing an extracted answer and keeps the
    answer with the largest total, shown by its best solution (weighted best-of-N, Uesato et al. 2022;
    Li et al. 2023, "Making Large Language Models Better Reasoners with Step-Aware Verifier"). With
    ``batch_size`` the N samples are drawn in chunks, each scored and kept as it finishes, so a budget
    cut (tokens or seconds) returns the best of the chunks done. With ``stop_score`` it stops drawing once a
    candidate is scored that high (adaptive sampling: the verifier, not a fixed N, decides when a prompt has
    had enough; cf. Adaptive-Consistency, Aggarwal et al. 2023, with a verifier in place of the vote).
    """

    needs_verifier = True
    keeps_constraints = True

    class Options(Options):
        n_samples: int | None = Field(
            None,
            ge=1,
            le=MAX_SAMPLES,
            description="N, solutions to draw; default budget.max_samples, else 16 (capped by budget.max_samples).",
        )
        selection: Literal["best", "weighted"] = Field(
            "best", description="best: highest single score; weighted: highest score total per extracted answer."
        )
        aggregation: Literal["min", "prod", "last", "mean"] = Field(
            "min", description="How a step verifier's (PRM's) step scores become one score per solution."
        )
        answer_extraction: Extraction = Field(
            "content", description="What counts as the same answer: the visible content, its last number, or \\boxed{}."
        )
        weight_transform: WeightTransform = Field(
            "auto",
            description="weighted only: scores -> weights; auto applies a sigmoid when a score lies outside [0, 1].",
        )
        score_early: bool = Field(
            False,
            description="Score each solution as soon as it finishes, while the others are still generated "
            "(streamed from the engine), for samples of very different lengths; default: one verifier call once "
            "all are done, which measured as fast or faster on the bundled models.",
        )
        batch_size: int | None = Field(
            None,
            ge=1,
            le=MAX_SAMPLES,
            description="Draw the N samples in chunks of this size, each scored as it finishes; default all at "
            f"once ({ADAPTIVE_CHUNK} with stop_score).",
        )
        stop_score: float | None = stop_score_field()

    Result = BestOfNResult

    async def explore(self, search: Search[BestOfNResult]) -> list[Candidate]:
        o, trace = self.options, search.trace
        total = sample_count(o.n_samples, search.budget)
        chunk = o.batch_size or (ADAPTIVE_CHUNK if o.stop_score is not None else total)
        pool: list[Candidate] = []
        while len(pool) < total:
            if self._confident(search):
                break
            params = search.request.params
            size = min(chunk, total - len(pool))
            if o.score_early:
                batch = await draw_scored(search, params, size, o.answer_extraction, o.aggregation, first=not pool)
            else:
                batch = await draw(search, params, size, o.answer_extraction, first=not pool)
                await score_candidates(search.verifier, search.request, batch, o.aggregation)
            if not batch:
                break  # keep the chunks already scored
            pool += batch
            best = max(batch, key=rank_key)
            done = "" if chunk >= total else f" ({len(pool)} of {total})"
            trace.emit(
                "scored",
                f"{len(batch)} candidates scored{done}; best {_fmt(best.score)} for answer {best.answer}",
                ids=[c.id for c in batch],
                scores=[c.score for c in batch],
                step_scores=[c.step_scores for c in batch],
                answers=[c.answer for c in batch],
            )
            if o.selection == "weighted":
                votes = self._votes(pool)
                trace.emit(
                    "votes",
                    f"score totals after {len(pool)}: {top_votes(votes, _counts(pool), weighted=True)}",
                    votes=votes,
                )
        return self.select(pool, search.request.n)

    def _confident(self, search: Search[BestOfNResult]) -> bool:
        """Whether a candidate of this search's trace (the probe's too, under compute_optimal) reached stop_score."""
        best = confident(search.trace.candidates, self.options.stop_score)
        if best is None:
            return False
        search.result.confident = True
        search.trace.emit(
            "stop",
            f"best score {_fmt(best.score)} >= stop_score {self.options.stop_score} after "
            f"{len(search.trace.candidates)} candidates",
            score=best.score,
            candidates=len(search.trace.candidates),
        )
        return True

    def select(self, candidates: Sequence[Candidate], n: int) -> list[Candidate]:
        """The ``n`` best distinct answers: by single score, or by score total per answer (weighted)."""
        if self.options.selection == "weighted":
            votes = self._votes(candidates)
            if votes:
                return winners(candidates, votes, n)
        return best_distinct(candidates, n)

    def fallback(self, candidates: Sequence[Candidate], n: int, result: BestOfNResult) -> list[Candidate]:
        return self.select(candidates, n)

    def finish(self, result: BestOfNResult, choices: list[Candidate], exhausted: str | None) -> BestOfNResult:
        """The per-answer ranking of the whole pool: count, best score and (weighted) score total."""
        pool = result.trace.candidates
        votes = self._votes(pool) if self.options.selection == "weighted" else {}
        counts = _counts(pool)
        best: dict[str | None, Candidate] = {}
        for c in sorted(pool, key=rank_key, reverse=True):
            best.setdefault(c.answer, c)
        order = list(votes) if votes else list(best)
        ranking = [
            {
                "answer": a,
                "count": counts.get(a, 0),
                "best_score": best[a].score,
                **({"weight": round(votes[a], 6)} if votes else {}),
            }
            for a in order
        ]
        result.selection, result.samples, result.ranking = self.options.selection, len(pool), ranking
        return super().finish(result, choices, exhausted)

    def _votes(self, candidates: Sequence[Candidate]) -> dict[str, float]:
        weights = vote_weights([c.score for c in candidates], self.options.weight_transform)
        return tally([c.answer for c in candidates], weights)


def _counts(candidates: Sequence[Candidate]) -> dict[str | None, int]:
    counts: dict[str | None, int] = {}
    for c in candidates:
        counts[c.answer] = counts.get(c.answer, 0) + 1
    return counts


def _fmt(score: float | None) -> str:
    return "unscored" if score is None else f"{score:.3f}"
