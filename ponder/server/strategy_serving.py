"""Serving a request through a test-time strategy: resolve it, run it, and shape its result for the wire."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ponder.core.errors import InvalidRequestError, PonderError
from ponder.core.protocols import Engine, Verifier
from ponder.core.reasoning import split_reasoning
from ponder.core.types import Budget, Prompt, SamplingParams
from ponder.server.content_policy import ContentFilter
from ponder.server.convert import Thinking
from ponder.server.effort import resolve_effort
from ponder.server.effort_policy import load_policy
from ponder.server.protocol import PonderFields
from ponder.server.router_policy import load_server_router
from ponder.server.settings import ServerSettings
from ponder.strategies import registry
from ponder.strategies.base import Strategy, StrategyRequest, StrategyResult
from ponder.strategies.compute_optimal import ComputeOptimal
from ponder.strategies.steps import StepFormat
from ponder.strategies.thinking import BudgetForcingEngine, ThinkingBudget, budget_forcing, token_counter
from ponder.strategies.trace import Candidate, Trace

if TYPE_CHECKING:
    from ponder.verifiers.registry import VerifierSet

_PIECE = re.compile(r"\s*\S+|\s+")


@dataclass
class StrategyPlan:
    """A validated request's strategy, verifier and budget; ``None`` of it is stored on the service."""

    name: str
    strategy: Strategy
    verifier: Verifier | None
    budget: Budget  # what the request asked for (strategies size their search from it)
    ceiling: Budget  # the server's limits
    clamped: list[str]
    effort: str | None
    return_trace: bool
    filtered: bool = False  # a content policy must see the candidates before any token is sent
    whole_answers: bool = False  # answers are read (for tool calls) before they are sent
    sample_cap: int | None = None  # the effort policy's max_tokens_per_sample, for requests without max_tokens
    thinking: ThinkingBudget | None = None  # each sample's thinking budget: budget forcing on every engine call
    forcing: BudgetForcingEngine | None = None  # the engine that enforced it, with its counts

    @property
    def direct(self) -> bool:
        """Plain decoding, unfiltered, without a trace: the server streams the engine's tokens straight through."""
        return self.strategy.streams_tokens and not self.return_trace and not self.filtered and not self.whole_answers

    def capped(self, params: SamplingParams, n: int) -> SamplingParams:
        """``params`` within the per-sample cap (when the request set no max_tokens) and, for plain decoding,
        which no meter watches, within the server's sample ceiling and the request's token limit."""
        cap = self.sample_cap if params.max_tokens is None else None
        if self.direct:
            if self.ceiling.max_samples is not None and n > self.ceiling.max_samples:
                raise InvalidRequestError(
                    f"n is {n}, more samples than this server spends on a request ({self.ceiling.max_samples}).",
                    param="n",
                )
            tokens = self.budget.max_tokens or self.ceiling.max_tokens
            if tokens is not None:
                if tokens < n:
                    raise InvalidRequestError(f"A budget of {tokens} tokens cannot give {n} samples.", param="budget")
                cap = tokens // n if cap is None else min(cap, tokens // n)
        return params if cap is None else dataclasses.replace(params, token_cap=cap)

    def ponder_block(self) -> dict[str, Any]:
        asked = {k: getattr(self.budget, k) for k in ("max_samples", "max_tokens", "max_seconds")}
        limits = {k: v if v is not None else getattr(self.ceiling, k) for k, v in asked.items()}
        block = {
            "strategy": self.name,
            "verifier": self.verifier.name if self.verifier is not None and not self.direct else None,
            "effort": self.effort,
            "budget": limits,
        }
        if self.clamped:
            block["budget_clamped"] = self.clamped
        if self.thinking is not None:
            block["thinking"] = self.thinking.public()
            if self.forcing is not None:  # how many samples had their thought closed for them, or extended
                block["thinking"] |= {"forced": self.forcing.forced, "extended": self.forcing.extended}
        return block


class StrategyPlanner:
    """Turns the extension fields of a request into a :class:`StrategyPlan`, refusing what cannot run."""

    def __init__(
        self, engine: Engine, settings: ServerSettings, verifiers: VerifierSet | None, filtered: bool = False
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.verifiers = verifiers
        self.filtered = filtered
        self.policy = load_policy(settings.effort_policy)
        self.router = load_server_router(settings.router)

    def plan(self, req: PonderFields) -> StrategyPlan:
        effort = resolve_effort(
            req.reasoning_effort,
            req.thinking_level,
            req.thinking_budget,
            default_strategy=self.default_strategy(),
            policy=self.policy,
            strategy=req.strategy,
        )
        name = req.strategy or effort.strategy or "none"
        options = req.strategy_options if req.strategy or req.strategy_options else effort.strategy_options
        try:
            cls = registry.get(name)
        except KeyError:
            valid = ", ".join(registry.names())
            raise InvalidRequestError(f"Unknown strategy '{name}'. Valid values: {valid}.", param="strategy") from None
        try:
            strategy = cls.from_request(options)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in exc.errors())
            raise InvalidRequestError(
                f"Invalid strategy_options for '{name}': {problems}", param="strategy_options"
            ) from exc
        if isinstance(strategy, ComputeOptimal):
            strategy.use_router(self.router)
        verifier = self.verifier(req.verifier or effort.verifier)
        budget, ceiling, clamped = self.budget(req, effort.max_samples, effort.max_tokens)
        plan = StrategyPlan(
            name, strategy, verifier, budget, ceiling, clamped, effort.effort, req.return_trace, self.filtered
        )
        plan.sample_cap = effort.max_tokens_per_sample
        plan.thinking = self.thinking(req, effort.thinking)
        if not plan.direct:
            strategy.check(self.engine, verifier)
        return plan

    def thinking(self, req: PonderFields, budget: ThinkingBudget | None) -> ThinkingBudget | None:
        """The thinking budget, where the engine can continue a sample after closing its thinking: a request
        asking for one elsewhere is a 400; the effort policy's own is then dropped."""
        if budget is None or self.engine.capabilities.prefix_continuation:
            return budget
        if req.thinking_budget is not None and req.thinking_budget > 0:
            raise InvalidRequestError(
                "thinking_budget closes a sample's thinking and continues its answer; this engine cannot continue "
                "a partial assistant turn.",
                param="thinking_budget",
            )
        return None

    def default_strategy(self) -> str:
        """What ``reasoning_effort`` low/medium/high runs: reranking when a verifier is loaded, else voting."""
        if self.settings.default_strategy:
            return self.settings.default_strategy
        return "best_of_n" if self.verifiers is not None and self.verifiers.default is not None else "self_consistency"

    def verifier(self, name: str | None) -> Verifier | None:
        if self.verifiers is None:
            if name is not None:
                raise InvalidRequestError(
                    f"Unknown verifier '{name}'. No verifiers are loaded on this server.", param="verifier"
                )
            return None
        if name is None:
            return self.verifiers.default
        try:
            return self.verifiers.get(name)
        except KeyError as exc:
            message = exc.args[0] if exc.args else f"Unknown verifier '{name}'."
            raise InvalidRequestError(str(message), param="verifier") from None

    def budget(
        self, req: PonderFields, effort_samples: int | None, effort_tokens: int | None
    ) -> tuple[Budget, Budget, list[str]]:
        """The request's budget clamped to the server's limits, and the list of fields that were clamped."""
        limits = self.settings.limits
        ceiling = Budget(limits.max_samples, limits.max_tokens, limits.max_seconds)
        asked = req.budget.model_dump() if req.budget else {}
        asked.setdefault("max_samples", None)
        asked.setdefault("max_tokens", None)
        if asked["max_samples"] is None:
            asked["max_samples"] = effort_samples
        if asked["max_tokens"] is None:
            asked["max_tokens"] = effort_tokens
        values, clamped = {}, []
        for key in ("max_samples", "max_tokens", "max_seconds"):
            value, top = asked.get(key), getattr(ceiling, key)
            if value is not None and value > top:
                clamped.append(key)
                value = top
            values[key] = value
        return Budget(**values), ceiling, clamped

    def label(self, req: PonderFields) -> str:
        """The strategy of a request refused before it ran, as a metrics label (never a client's own string)."""
        try:
            return self.plan(req).name
        except PonderError:
            return "unknown"


class StrategyRunner:
    """Runs a plan over the engine and turns its result into choices, usage and the ``ponder`` block."""

    def __init__(
        self,
        engine: Engine,
        step_format: StepFormat,
        content_filter: ContentFilter | None = None,
        on_result: Callable[[StrategyPlan, StrategyResult], None] | None = None,
    ) -> None:
        self.engine = engine
        self.step_format = step_format
        self.content_filter = content_filter
        self.on_result = on_result  # every finished search, streamed or not (the server's metrics)
        self.count_tokens = token_counter(engine)  # for the thinking a partial turn already holds

    def engine_for(self, plan: StrategyPlan) -> Engine:
        """The engine a request's samples come from: with its thinking budget enforced, when it has one."""
        engine = budget_forcing(self.engine, plan.thinking, self.step_format, self.count_tokens)
        plan.forcing = engine if isinstance(engine, BudgetForcingEngine) else None
        return engine

    async def run(
        self, plan: StrategyPlan, prompt: Prompt, params: SamplingParams, n: int, trace: Trace
    ) -> StrategyResult:
        request = StrategyRequest(prompt, params, n, self.step_format)
        policy = self.content_filter
        if policy is not None:
            refused = policy.screen(request.problem, n, trace)  # a request the spec refuses costs no generation
            if refused is not None:
                return refused
            # the model reads the spec before answering; verifiers judge the client's own conversation
            request = dataclasses.replace(request, prompt=policy.in_context(prompt), shown=request.problem)
        engine = self.engine_for(plan)
        result = await plan.strategy.run(request, engine, plan.verifier, plan.budget, trace, plan.ceiling)
        if policy is not None:
            await policy.apply(result, n, request.problem)
        if self.on_result is not None:
            self.on_result(plan, result)
        return result


def answer_parts(candidate: Candidate, parse_reasoning: bool, implicit_open: bool = False) -> tuple[str | None, str]:
    """Reasoning and visible content of a chosen candidate (``implicit_open``: see ``ThinkSplitter``)."""
    if not parse_reasoning:
        return None, candidate.text
    split = split_reasoning(candidate.text, implicit_open=implicit_open)
    return split.reasoning or None, split.content


def strategy_usage(result: StrategyResult, thinking: Thinking | None = None) -> tuple[int, int, int, int]:
    """Prompt, completion, cached and reasoning tokens: every generated token counts; reasoning tokens (OpenAI's
    meaning) are those of the candidates not returned plus the returned answers' thinking tokens."""
    spent = result.spent
    returned = sum(c.num_tokens for c in result.choices)
    thought = sum(thinking.tokens(c.text, c.num_tokens) for c in result.choices) if thinking is not None else 0
    return spent.prompt_tokens, spent.tokens, spent.cached_tokens, max(0, spent.tokens - returned) + thought


def strategy_ponder(plan: StrategyPlan, result: StrategyResult) -> dict[str, Any]:
    block = plan.ponder_block()
    block["spent"] = result.spent.public()
    block["scores"] = [c.score for c in result.choices]
    if result.exhausted:
        block["exhausted"] = result.exhausted
    if result.sampling_temperature is not None:
        block["sampling_temperature"] = result.sampling_temperature
    if result.content_filter is not None:
        block["content_filter"] = result.content_filter
    block.update(result.summary())
    if plan.return_trace:
        block["trace"] = {
            "candidates": [
                {
                    "id": c.id,
                    "answer": c.answer,
                    "score": c.score,
                    "step_scores": c.step_scores,
                    "tokens": c.num_tokens,
                    "finish_reason": c.finish_reason,
                    "text": c.text,
                }
                for c in result.trace.candidates
            ],
            "events": result.trace.public(),
        }
    return block


def pieces(text: str) -> list[str]:
    """A chosen answer cut into word-sized deltas for streaming."""
    return _PIECE.findall(text)


async def run_with_progress(
    runner: StrategyRunner, plan: StrategyPlan, prompt: Prompt, params: SamplingParams, n: int
) -> AsyncIterator[str | StrategyResult]:
    """Progress lines while the strategy runs, then its result; closing the iterator cancels the search."""
    trace = Trace(keep=plan.return_trace, live=True)

    async def search() -> StrategyResult:
        try:
            return await runner.run(plan, prompt, params, n, trace)
        finally:
            trace.close()

    task = asyncio.create_task(search())
    try:
        async for line in trace.progress():
            yield line
        yield await task
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
