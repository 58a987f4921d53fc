"""The ``compute_optimal`` strategy (alias ``auto``): probe the prompt's difficulty, then route it to a strategy."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ponder.core.errors import InvalidRequestError
from ponder.core.protocols import Engine, Verifier, is_step_verifier
from ponder.core.types import Budget
from ponder.strategies import registry
from ponder.strategies.base import Options, Search, Strategy, StrategyResult, best_distinct, rank_key
from ponder.strategies.meter import Meter
from ponder.strategies.registry import register
from ponder.strategies.router import (
    LEVELS,
    PROBE_ARM,
    RouterPolicy,
    check_route_levels,
    probe_features,
    prompt_question,
    question_features,
)
from ponder.strategies.sampling import draw
from ponder.strategies.scoring import score_candidates
from ponder.strategies.trace import Candidate
from ponder.strategies.voting import tally

PROBE = "probe"  # the route that spends nothing more: the probe's majority answer is returned
DEFAULT_TOTAL = 16  # samples in all when neither the budget nor the server sets a limit
DEFAULT_THRESHOLDS = (0.95, 0.75, 0.5, 0.25)


class Route(BaseModel):
    """Where one difficulty level goes: a registered strategy, its options, and its share of what the probe left."""

    model_config = ConfigDict(extra="forbid")

    strategy: str = Field(min_length=1, description=f"A registered strategy name, or '{PROBE}': the probe's majority.")
    strategy_options: dict[str, Any] = Field(default_factory=dict, description="That strategy's strategy_options.")
    budget_fraction: float = Field(
        1.0, gt=0.0, le=1.0, description="Share of the samples (and tokens) left after the probe that the route gets."
    )
    samples: int | None = Field(
        None, ge=1, description="At most this many samples after the probe (a learned router's arm); else the share."
    )

    @model_validator(mode="after")
    def _bare_probe(self) -> Route:
        if self.strategy == PROBE and self.strategy_options:
            raise ValueError(f"the '{PROBE}' route takes no strategy_options")
        return self


def _routes(*alternatives: tuple[str, dict[str, Any], float]) -> list[Route]:
    return [Route(strategy=s, strategy_options=o, budget_fraction=f) for s, o, f in alternatives]


# Per level, alternatives in order of preference: the first whose needs (verifier, PRM, prefix continuation)
# the engine and verifier meet is taken. An alternative not registered on this server is skipped.
DEFAULT_ROUTES: dict[int, list[Route]] = {
    1: _routes((PROBE, {}, 1.0)),
    2: _routes(("best_of_n", {"selection": "weighted"}, 0.25), ("self_consistency", {}, 0.25)),
    3: _routes(("best_of_n", {"selection": "weighted"}, 0.5), ("self_consistency", {}, 0.5)),
    4: _routes(("beam_search", {}, 1.0), ("best_of_n", {}, 1.0), ("self_consistency", {}, 1.0)),
    5: _routes(("beam_search", {}, 1.0), ("best_of_n", {}, 1.0), ("self_consistency", {}, 1.0)),
}


def difficulty(confidence: float, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> int:
    """Level 1 (easy) .. 5 (hard): 1 + the number of thresholds the confidence falls below."""
    return 1 + sum(confidence < t for t in thresholds)


def probability(scores: Sequence[float]) -> list[float]:
    """Scores on a [0, 1] scale: as they are when all lie in it (PRM, rule, judge), else through a sigmoid (logits)."""
    if all(0.0 <= s <= 1.0 for s in scores):
        return list(scores)
    return [1.0 / (1.0 + math.exp(-max(min(s, 60.0), -60.0))) for s in scores]


def majority(candidates: Sequence[Candidate], n: int) -> list[Candidate]:
    """The ``n`` most-voted answers, each as its best candidate; the best distinct others fill in."""
    chosen = [
        max((c for c in candidates if c.answer == a), key=rank_key) for a in list(tally(_answers(candidates)))[:n]
    ]
    return chosen + [c for c in best_distinct(candidates, len(candidates)) if c not in chosen][: n - len(chosen)]


@dataclass
class Probe:
    """What the probe found: its candidates, their vote, and the difficulty level they point to."""

    candidates: list[Candidate]
    votes: dict[str, float]
    agreement: float
    mean_score: float | None
    confidence: float
    level: int
    features: dict[str, float] = field(default_factory=dict)  # what a learned router reads (and eval logs record)
    solve_rate: float | None = None  # the router's predicted solve rate, when a router set the level


@dataclass
class Routed:
    """The strategy a request was routed to and its own search (on the same engine, verifier and trace)."""

    strategy: Strategy
    search: Search


@dataclass
class ComputeOptimalResult(StrategyResult):
    """The difficulty estimate, the route it chose, and the routed strategy's own figures."""

    difficulty: int = 0
    agreement: float = 0.0
    mean_score: float | None = None
    probe_samples: int = 0
    routed_to: str = PROBE
    routed_samples: int = 0
    routed: dict[str, Any] = field(default_factory=dict)
    route: Routed | None = None  # set once the request is routed; its figures become ``routed``
    probe: dict[str, float] = field(default_factory=dict)  # the probe's features (empty when no probe was drawn)
    router: bool = False  # a learned router chose the level and the route
    solve_rate: float | None = None  # the router's predicted solve rate

    def summary(self) -> dict[str, Any]:
        return {
            "difficulty": self.difficulty,
            "routed_to": self.routed_to,
            "agreement": round(self.agreement, 4),
            "mean_score": None if self.mean_score is None else round(self.mean_score, 4),
            "probe_samples": self.probe_samples,
            "routed_samples": self.routed_samples,
            "routed": self.routed,
            "probe": {k: round(v, 4) for k, v in self.probe.items()},
            "router": self.router,
            "solve_rate": None if self.solve_rate is None else round(self.solve_rate, 4),
        }


@register("compute_optimal")
class ComputeOptimal(Strategy):
    """Compute-optimal test-time scaling (Snell et al. 2024, "Scaling LLM Test-Time Compute Optimally").

    A cheap probe first: ``probe_samples`` answers, whose agreement (the share matching the majority answer)
    and, with a verifier, mean score (weighted by ``verifier_weight``) give a confidence in [0, 1]. The
    confidence falls into one of five difficulty levels by ``level_thresholds``; with the defaults
    (0.95, 0.75, 0.5, 0.25) and 4 probe samples and no verifier, 4/4 agreeing is level 1, 3/4 level 2,
    2/4 level 3, all different level 4, none extractable level 5. The level's route picks a strategy (the
    first alternative this engine and verifier can serve) and its share of the budget the probe left; it
    runs on the same metered engine, verifier and trace, so all spending is counted once. Easy prompts stop
    at the probe's majority; hard ones get beam search with a PRM, else reranking or voting with the full
    budget. The probe's samples stay candidates: the final answer is chosen from them and the routed ones.

    With a learned router (``ponder serve --router``, :mod:`ponder.strategies.router`), used when the request's
    verifier is the one it was trained with and the request sets none of ``routes``, ``level_thresholds``,
    ``probe_samples``, ``verifier_weight``: the router's probe, its predicted solve rate from the probe's and the
    question's features for the level, and the level's arm (strategy, options, samples) for the route, with the
    default alternatives behind it should the arm not fit this engine.
    """

    keeps_constraints = True  # its probe samples whole answers; under a constraint it routes only where that holds

    class Options(Options):
        probe_samples: int = Field(
            4, ge=1, le=64, description="Samples drawn to estimate difficulty (capped by budget.max_samples)."
        )
        level_thresholds: tuple[float, float, float, float] = Field(
            DEFAULT_THRESHOLDS,
            description="Confidence cut-offs, decreasing: confidence >= t1 is level 1, >= t2 level 2, ... "
            "below t4 level 5.",
        )
        verifier_weight: float = Field(
            0.5,
            ge=0.0,
            le=1.0,
            description="With a verifier, confidence = (1 - w) * agreement + w * mean probe score (scores outside "
            "[0, 1] go through a sigmoid); without one, confidence = agreement.",
        )
        answer_extraction: Literal["content", "last_number", "boxed"] = Field(
            "content", description="What counts as the same answer in the probe's agreement."
        )
        aggregation: Literal["min", "prod", "last", "mean"] = Field(
            "min", description="How a step verifier's (PRM's) step scores become one score per probe sample."
        )
        difficulty: int | None = Field(
            None,
            ge=1,
            le=5,
            description="A difficulty level already known (the server sets it from the conversation's thought "
            "signature): no probe is drawn unless that level's route is the probe itself.",
        )
        routes: dict[int, list[Route]] | None = Field(
            None,
            description="Level (1-5) -> a route or a list of alternatives {strategy, strategy_options, "
            "budget_fraction}; every level must be given. Default: 1 probe majority; 2 best_of_n weighted "
            "(else self_consistency) with 1/4 of the rest; 3 the same with 1/2; 4-5 beam_search (PRM and "
            "prefix continuation), else best_of_n, else self_consistency, with all of it.",
        )
        probe_answer: Literal["majority", "best_score"] = Field(
            "majority",
            description="What a route to the probe returns: its most-voted answer, or (with a verifier) its "
            "best-scored one (best-of-n over the probe).",
        )
        router: bool = Field(
            True,
            description="Follow the server's learned router (ponder serve --router) where it applies; false: the "
            "fixed thresholds and routes.",
        )

        @field_validator("level_thresholds")
        @classmethod
        def _decreasing(cls, value: tuple[float, ...]) -> tuple[float, ...]:
            if any(not 0.0 <= t <= 1.0 for t in value) or any(a <= b for a, b in pairwise(value)):
                raise ValueError("must be four strictly decreasing values in [0, 1]")
            return value

        @field_validator("routes", mode="before")
        @classmethod
        def _listed(cls, value: Any) -> Any:
            if isinstance(value, dict):
                return {k: v if isinstance(v, list) else [v] for k, v in value.items()}
            return value

        @model_validator(mode="after")
        def _known(self) -> ComputeOptimal.Options:
            if self.routes is not None:
                check_route_levels(self.routes)
                for level, alternatives in self.routes.items():
                    if not alternatives:
                        raise ValueError(f"routes level {level}: give at least one route")
                    for route in alternatives:
                        if route.strategy != PROBE:
                            _build(route, f"routes level {level}")
            return self

    Result = ComputeOptimalResult

    def __init__(self, options: BaseModel | None = None) -> None:
        super().__init__(options)
        self._explicit = self.options.routes is not None
        self._routes = self.options.routes if self._explicit else DEFAULT_ROUTES
        self._router: RouterPolicy | None = None
        self._router_routes: dict[int, list[Route]] = {}

    def use_router(self, router: RouterPolicy | None) -> None:
        """Route by a learned router, unless this request asked for its own rule or for none."""
        own = self.options.model_fields_set & {"routes", "level_thresholds", "probe_samples", "verifier_weight"}
        self._router = router if router is not None and self.options.router and not own else None
        self._router_routes = {} if self._router is None else router_routes(self._router)

    def check(self, engine: Engine, verifier: Verifier | None) -> None:
        """Refuse up front a table with a level that no alternative can serve with this engine and verifier."""
        super().check(engine, verifier)
        for level in LEVELS:
            self._route(level, engine, verifier)

    async def explore(self, search: Search[ComputeOptimalResult]) -> list[Candidate]:
        meter, result = search.engine.meter, search.result
        total = meter.limit("max_samples") or DEFAULT_TOTAL
        known = self.options.difficulty
        router = self._routing(search.verifier)
        if known is not None and self._route(known, search.engine, search.verifier)[1] is not None:
            probe = Probe([], {}, 0.0, None, 0.0, known)
            search.trace.emit("probe", f"difficulty {known}/5 known from the conversation: no probe", known=known)
        else:
            probe = await self._probe(search, total, router)
        constrained = search.request.params.structured is not None
        route, routed = self._route(probe.level, search.engine, search.verifier, constrained)
        share = 0 if routed is None else _share(route, total - meter.spent.samples)
        name = route.strategy if share else PROBE
        result.difficulty, result.agreement, result.mean_score = probe.level, probe.agreement, probe.mean_score
        result.probe_samples, result.routed_to, result.routed_samples = len(probe.candidates), name, share
        result.probe, result.router, result.solve_rate = probe.features, router is not None, probe.solve_rate
        scored = "" if probe.mean_score is None else f", mean score {probe.mean_score:.2f}"
        if probe.solve_rate is not None:
            scored += f", predicted solve rate {probe.solve_rate:.2f}"
        plan = f"{name}, {share} samples" if share else "probe majority, no more samples"
        if routed is not None and not share:
            plan += " (the probe used the whole budget)"
        search.trace.emit(
            "route",
            f"difficulty {probe.level}/5 (agreement {probe.agreement:.2f}{scored}) -> {plan}",
            difficulty=probe.level,
            agreement=probe.agreement,
            mean_score=probe.mean_score,
            confidence=probe.confidence,
            routed_to=name,
            samples=share,
            strategy_options=route.strategy_options if name != PROBE else {},
        )
        if name == PROBE or routed is None:
            how = router.probe_answer if router is not None else self.options.probe_answer
            if how == "best_score" and search.verifier is not None:
                return best_distinct(probe.candidates, search.request.n)
            return majority(probe.candidates, search.request.n)
        sub = routed.begin(
            search.request, search.engine, search.verifier, _sub_budget(meter, route, share), search.trace
        )
        result.route = Routed(routed, sub)
        found = await routed.explore(sub)
        known = {id(c) for c in search.trace.candidates}
        pool = [*search.trace.candidates, *(c for c in found if id(c) not in known)]
        return routed.fallback(pool, search.request.n, sub.result)

    async def _probe(
        self, search: Search[ComputeOptimalResult], total: int, router: RouterPolicy | None = None
    ) -> Probe:
        """A few samples, scored when a verifier is loaded: their agreement and mean score (or, with a router, its
        prediction from the probe's and the question's features) give the difficulty."""
        o, verifier = self.options, search.verifier
        k = router.probe_samples if router is not None else o.probe_samples
        extraction = router.answer_extraction if router is not None else o.answer_extraction
        aggregation = router.aggregation if router is not None else o.aggregation
        probe = await draw(search, search.request.params, min(k, total), extraction)
        await score_candidates(verifier, search.request, probe, aggregation)
        answers = _answers(probe)
        votes = tally(answers)
        agreement = (next(iter(votes.values())) / len(probe)) if votes and probe else 0.0
        scores = probability([c.score for c in probe]) if verifier is not None and probe else None
        mean = sum(scores) / len(probe) if scores is not None else None
        prompt = search.request.prompt
        features = {
            **probe_features(answers, scores, [c.num_tokens for c in probe]),
            **question_features(prompt_question(prompt.messages, prompt.text)),
        }
        solve_rate = None
        if router is not None:
            solve_rate, level = router.level(features)
            confidence = solve_rate
        else:
            confidence = agreement if mean is None else (1 - o.verifier_weight) * agreement + o.verifier_weight * mean
            level = difficulty(confidence, o.level_thresholds)
        search.trace.emit(
            "probe",
            f"probe: {len(probe)} samples, answers {_tally_line(votes)}",
            ids=[c.id for c in probe],
            answers=answers,
            scores=[c.score for c in probe],
        )
        return Probe(probe, votes, agreement, mean, confidence, level, features, solve_rate)

    def fallback(self, candidates: Sequence[Candidate], n: int, result: ComputeOptimalResult) -> list[Candidate]:
        """Cut short: choose as the routed strategy would, from everything found; before routing, the majority."""
        if result.route is None:
            return majority(candidates, n)
        return result.route.strategy.fallback(candidates, n, result.route.search.result)

    def finish(
        self, result: ComputeOptimalResult, choices: list[Candidate], exhausted: str | None
    ) -> ComputeOptimalResult:
        """The routed strategy's figures, summed up as it would for a search of its own."""
        if result.route is not None:
            result.routed = result.route.strategy.finish(result.route.search.result, choices, exhausted).summary()
        return super().finish(result, choices, exhausted)

    def _route(
        self, level: int, engine: Engine, verifier: Verifier | None, constrained: bool = False
    ) -> tuple[Route, Strategy | None]:
        """The level's first alternative this engine and verifier can serve, built; ``None`` for the probe route."""
        skipped = []
        table = self._router_routes if self._routing(verifier) is not None else self._routes
        for route in table[level]:
            if route.strategy == PROBE:
                return route, None
            try:
                strategy = _build(route, f"routes level {level}")
            except ValueError as exc:
                if self._explicit or _registered(route.strategy):
                    raise InvalidRequestError(str(exc), param="strategy_options") from None
                continue  # a default alternative this server does not have
            why = _unfit(strategy, engine, verifier)
            if why is None and constrained and not strategy.keeps_constraints:
                why = "cannot keep the output constraint"
            if why is None:
                return route, strategy
            skipped.append(f"{route.strategy} ({why})")
        raise InvalidRequestError(
            f"No route for difficulty {level} fits this engine and verifier: {'; '.join(skipped)}.",
            param="strategy_options",
        )

    def _routing(self, verifier: Verifier | None) -> RouterPolicy | None:
        """The router, when one is in use and its features read this verifier's scores."""
        router = self._router
        name = None if verifier is None else getattr(verifier, "name", None)
        return router if router is not None and router.verifier == name else None


def router_routes(router: RouterPolicy) -> dict[int, list[Route]]:
    """Each level's arm as a route, the default alternatives behind it (for an engine the arm does not fit)."""
    table = {}
    for level in LEVELS:
        arm = router.arm(level)
        if arm.strategy == PROBE_ARM:
            table[level] = [Route(strategy=PROBE)]
        else:
            samples = router.samples_after_probe(arm)
            first = Route(strategy=arm.strategy, strategy_options=arm.strategy_options, samples=samples)
            table[level] = [first, *DEFAULT_ROUTES[level]]
    return table


def check_router(router: RouterPolicy) -> None:
    """Refuse a router whose arms name an unknown strategy or options it does not take (``ValueError``)."""
    for arm in router.arms:
        if arm.strategy != PROBE_ARM:
            _build(Route(strategy=arm.strategy, strategy_options=arm.strategy_options), f"arm {arm.name!r}")


def _build(route: Route, where: str) -> Strategy:
    """The route's strategy with its validated options; ``ValueError`` naming the valid strategies otherwise."""
    try:
        cls = registry.get(route.strategy)
    except KeyError:
        valid = ", ".join([PROBE, *(n for n in registry.names() if n != "compute_optimal")])
        raise ValueError(f"{where}: unknown strategy '{route.strategy}'. Valid values: {valid}.") from None
    if issubclass(cls, ComputeOptimal):
        raise ValueError(f"{where}: '{route.strategy}' cannot route to itself")
    try:
        return cls(cls.Options.model_validate(route.strategy_options))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{where}: invalid strategy_options for '{route.strategy}': {problems}") from None


def _registered(name: str) -> bool:
    try:
        registry.get(name)
    except KeyError:
        return False
    return True


def _unfit(strategy: Strategy, engine: Engine, verifier: Verifier | None) -> str | None:
    """Why ``strategy`` cannot run on this engine and verifier, or ``None`` when it can."""
    is_step = is_step_verifier(verifier)
    if strategy.needs_step_verifier and not is_step:
        return "needs a step verifier"
    if strategy.needs_verifier and verifier is None:
        return "needs a verifier"
    if strategy.needs_prefix_continuation and not engine.capabilities.prefix_continuation:
        return "needs prefix continuation"
    try:
        strategy.check(engine, verifier)
    except InvalidRequestError as exc:
        return exc.message
    return None


def _sub_budget(meter: Meter, route: Route, share: int) -> Budget:
    """The routed strategy's budget: its samples, its fraction of the tokens left, the seconds left."""
    tokens = meter.limit("max_tokens")
    seconds = meter.remaining_seconds()
    return Budget(
        max_samples=share,
        max_tokens=None if tokens is None else max(1, int(route.budget_fraction * (tokens - meter.spent.tokens))),
        max_seconds=None if seconds is None else max(seconds, 0.0),
    )


def _share(route: Route, left: int) -> int:
    """Samples a route gets: its own count or its fraction of what is left, at least one while anything is left."""
    if left <= 0:
        return 0
    if route.samples is not None:
        return min(route.samples, left)
    return max(1, math.floor(route.budget_fraction * left))


def _answers(candidates: Sequence[Candidate]) -> list[str | None]:
    return [c.answer for c in candidates]


def _tally_line(votes: dict[str, float], k: int = 5) -> str:
    parts = [f"{a} x{int(v)}" for a, v in list(votes.items())[:k]]
    if len(votes) > k:
        parts.append(f"+{len(votes) - k} more")
    return ", ".join(parts) or "none extractable"
