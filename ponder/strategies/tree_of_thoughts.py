"""The ``tree_of_thoughts`` strategy: BFS or DFS over reasoning steps, valued by a PRM or by the model itself."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from ponder.core.errors import InvalidRequestError
from ponder.core.protocols import Engine, Verifier, is_step_verifier
from ponder.core.types import Prompt, Sample, SamplingParams
from ponder.strategies.base import Search, Strategy, StrategyResult, best_distinct, gather
from ponder.strategies.meter import BudgetExhausted
from ponder.strategies.registry import register
from ponder.strategies.scoring import aggregate
from ponder.strategies.step_search import solutions_wanted
from ponder.strategies.trace import Candidate
from ponder.strategies.tree import Node, StepTree, TreeOptions

JUDGE_QUESTION = "Is this reasoning correct so far? Answer yes or no."
JUDGE_TOP_LOGPROBS = 5
NEUTRAL = 0.5  # a judgement that names neither yes nor no


def p_yes(sample: Sample | None) -> float:
    """P(yes) normalised against P(no), from the first generated token and its top alternatives; 0.5 without either."""
    if sample is None or not sample.logprobs:
        return NEUTRAL
    first = sample.logprobs[0]
    probs = dict(first.top)
    probs.setdefault(first.token, first.logprob)
    yes = sum(math.exp(lp) for tok, lp in probs.items() if tok.strip().lower() == "yes")
    no = sum(math.exp(lp) for tok, lp in probs.items() if tok.strip().lower() == "no")
    return yes / (yes + no) if yes + no > 0 else NEUTRAL


def problem_text(prompt: Prompt) -> str:
    """The problem as a judge reads it: the last user message (text parts), or the raw prompt."""
    if prompt.text is not None:
        return prompt.text
    users = [m.get("content") for m in prompt.messages or () if m.get("role") == "user"]
    content = users[-1] if users else ""
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content or "")


class _Stop(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class TreeOfThoughtsResult(StrategyResult):
    """Tree of Thoughts' result with what the search did."""

    search: str = "bfs"
    proposals: int = 0
    breadth: int = 0
    depth: int = 0
    states_expanded: int = 0
    pruned: int = 0
    finished: int = 0
    stop_reason: str | None = None


@register("tree_of_thoughts")
class TreeOfThoughts(Strategy):
    """Tree of Thoughts (Yao et al. 2023, "Tree of Thoughts: Deliberate Problem Solving with Large Language Models").

    A state is a partial solution; each expansion proposes ``proposals`` next steps in one engine call from the
    state's cached prefix, and every proposal is valued (``evaluator="prm"``: the PRM score of its latest step, a
    finished one's step scores aggregated by ``aggregation``; ``"self"``: the model's own P(yes) to "is this reasoning
    correct so far?", asked as a new chat with the think block pre-closed, max_tokens=1, read from the top-5 logprobs
    of the first token and normalised against P(no), 0.5 when neither appears). Proposals that finish the solution are
    candidates. BFS goes level by level, keeping the ``breadth`` best unfinished states, until N solutions have
    finished (N = budget.max_samples, else 16), none is left open, or ``max_depth``. DFS goes deepest-first in
    value order: a proposal valued below ``threshold`` is pruned, and a state whose proposals are all pruned or
    explored, or that reaches ``max_depth``, is backtracked from; it stops at the first finished candidate valued at
    least ``threshold``, after ``max_states`` expansions, or when the budget ends. Both return the best finished
    candidates by value.
    """

    needs_prefix_continuation = True

    class Options(TreeOptions):
        search: Literal["bfs", "dfs"] = Field("bfs", description="bfs (level by level, keep the best) or dfs.")
        proposals: int | None = Field(
            None,
            ge=1,
            le=64,
            description="k, next steps proposed per state (one engine call); default min(4, N), "
            "N = budget.max_samples, else 16.",
        )
        breadth: int | None = Field(
            None, ge=1, le=4096, description="b, states kept per level (BFS); default max(1, N // k)."
        )
        evaluator: Literal["prm", "self"] = Field(
            "prm",
            description="How a state is valued: prm (the PRM score of its latest step; needs a step verifier) or "
            "self (the model's P(yes) that the reasoning is correct so far; needs an engine with logprobs).",
        )
        threshold: float = Field(
            0.5,
            ge=0.0,
            le=1.0,
            description="DFS: a state valued below it is pruned; a finished one valued at least it ends the search.",
        )
        max_states: int | None = Field(
            None, ge=1, le=100000, description="DFS: most states expanded (one engine call each); default 4 x N."
        )

    Result = TreeOfThoughtsResult

    def check(self, engine: Engine, verifier: Verifier | None) -> None:
        super().check(engine, verifier)
        if self.options.evaluator == "prm" and not is_step_verifier(verifier):
            got = f"'{verifier.name}' scores whole answers only" if verifier is not None else "no verifier is loaded"
            raise InvalidRequestError(
                f"tree_of_thoughts with evaluator='prm' needs a step verifier (a PRM); {got}. "
                "Use evaluator='self' to let the model judge its own steps.",
                param="verifier",
            )
        caps = engine.capabilities
        if self.options.evaluator == "self" and (not caps.logprobs or caps.max_top_logprobs < 1):
            raise InvalidRequestError(
                "tree_of_thoughts with evaluator='self' reads the model's yes/no logprobs; this engine returns none.",
                param="strategy_options",
            )

    async def explore(self, search: Search[TreeOfThoughtsResult]) -> list[Candidate]:
        return await Thoughts(self.options, search).run()

    def finish(
        self, result: TreeOfThoughtsResult, choices: list[Candidate], exhausted: str | None
    ) -> TreeOfThoughtsResult:
        result.search = self.options.search
        if exhausted:
            result.stop_reason = exhausted
        return super().finish(result, choices, exhausted)


class Thoughts:
    """One request's Tree of Thoughts: the tree, its sizes, the best open state, and the result it keeps current."""

    def __init__(self, options: TreeOfThoughts.Options, search: Search[TreeOfThoughtsResult]) -> None:
        self.options = options
        self.request, self.engine, self.result = search.request, search.engine, search.result
        self.tree = StepTree(options, search.request, search.engine, search.verifier, search.trace)
        self.trace = search.trace
        self.total = total = solutions_wanted(search.budget)
        self.k = options.proposals or min(4, total)
        self.b = options.breadth or max(1, total // self.k)
        self.max_states = options.max_states or 4 * total
        self.best_open: Node | None = None  # the deepest, best-valued unfinished state seen, for a cut search
        self.result.proposals, self.result.breadth = self.k, self.b

    async def run(self) -> list[Candidate]:
        o, tree, n = self.options, self.tree, self.request.n
        try:
            if o.search == "bfs":
                stop, frontier = await self._bfs()
            else:
                frontier = []
                stop = await self._dfs()
        except BudgetExhausted as cut:
            stop, frontier = cut.limit, []
        finished = list(tree.finished)
        if len(finished) < n:
            rest = frontier or ([self.best_open] if self.best_open is not None else [])
            finished += self._close(rest[: n - len(finished)])
        self.result.stop_reason = stop
        return best_distinct(finished, n)

    def _tally(self) -> None:
        """Keep the figures current: a time cut can end the search anywhere."""
        self.result.finished, self.result.states_expanded = len(self.tree.finished), self.tree.calls

    async def _bfs(self) -> tuple[str, list[Node]]:
        tree, meter = self.tree, self.engine.meter
        frontier = [tree.root]
        for depth in range(1, self.options.max_depth + 1):
            stuck = [s for s in frontier if tree.stuck(s)]
            if stuck:
                self._close(stuck)
                frontier = [s for s in frontier if s not in stuck]
            counts = self._allot(len(frontier), self.k)
            grown = await gather(*(self._expand(s, n) for s, n in zip(frontier, counts, strict=True) if n > 0))
            kids = [kid for g in grown if g for kid in g]
            if not kids:
                return meter.exhausted or "no_states", frontier
            self.result.depth = depth
            finished = [kid for kid in kids if kid.terminal]
            ranked = sorted((kid for kid in kids if not kid.terminal), key=lambda s: s.value, reverse=True)
            frontier, pruned = ranked[: self.b], ranked[self.b :]
            self.result.pruned += len(pruned)
            best = f"; best {frontier[0].value:.2f}: {frontier[0].latest()}" if frontier else ""
            trace_line = f"level {depth}: kept {len(frontier)} of {len(ranked)} states{self._note(finished)}{best}"
            self.trace.emit(
                "level",
                trace_line,
                level=depth,
                kept=[{"steps": list(s.pieces), "value": s.value} for s in frontier],
                pruned=len(pruned),
                finished=[kid.candidate.id for kid in finished],
            )
            if len(tree.finished) >= self.total or not frontier or meter.exhausted:
                stop = "enough" if len(tree.finished) >= self.total else meter.exhausted or "all_finished"
                return stop, frontier
        return "max_depth", frontier

    def _allot(self, states: int, k: int) -> list[int]:
        """Proposals per state, best first: ``k`` each, but never more than the solutions the budget can still admit.

        Any proposal may finish its solution, so a level asks for no more than could be accepted; the weakest
        states go without when the budget is nearly spent.
        """
        limit = self.engine.meter.limit("max_samples")
        room = math.inf if limit is None else limit - self.engine.meter.spent.samples
        counts = []
        for _ in range(states):
            n = int(max(0, min(k, room)))
            counts.append(n)
            room -= n
        return counts

    async def _dfs(self) -> str:
        try:
            found = await self._visit(self.tree.root)
        except _Stop as stop:
            return stop.reason
        return "found" if found else "exhausted"

    async def _visit(self, state: Node) -> bool:
        """Explore ``state`` depth-first; True once a finished candidate reaches the threshold."""
        o, tree, trace = self.options, self.tree, self.trace
        if len(tree.finished) >= self.total:
            raise _Stop("enough")
        if tree.calls >= self.max_states:
            raise _Stop("max_states")
        if state.depth >= o.max_depth or tree.stuck(state):
            trace.emit("backtrack", f"depth limit at {state.depth} ({state.latest()}), backtracking", node=state.id)
            return False
        kids = await self._expand(state, self.k)
        self.result.depth = max(self.result.depth, state.depth + 1)
        good = [kid for kid in kids if kid.terminal and kid.value >= o.threshold]
        if good:
            top = max(good, key=lambda s: s.value)
            trace.emit(
                "found",
                f"depth {top.depth}: answer {top.candidate.answer}, value {top.value:.2f} >= {o.threshold:.2f}; done",
                candidate=top.candidate.id,
                value=top.value,
            )
            return True
        ranked = sorted((kid for kid in kids if not kid.terminal), key=lambda s: s.value, reverse=True)
        best = f"; best {ranked[0].value:.2f}: {ranked[0].latest()}" if ranked else ""
        where = f"depth {state.depth + 1}" + (f" after ({state.latest()})" if state.depth else "")
        trace.emit(
            "expand",
            f"{where}: {len(kids)} proposals{self._note([kid for kid in kids if kid.terminal])}{best}",
            node=state.id,
            proposals=[{"id": kid.id, "step": kid.pieces[-1], "value": kid.value} for kid in kids],
        )
        for i, child in enumerate(ranked):
            if child.value < o.threshold:
                cut = ranked[i:]
                self.result.pruned += len(cut)
                trace.emit(
                    "prune",
                    f"pruned {len(cut)} at depth {child.depth} (best {child.value:.2f} < {o.threshold:.2f})",
                    pruned=[s.id for s in cut],
                )
                break
            if await self._visit(child):
                return True
        if self.engine.meter.exhausted:
            raise _Stop(self.engine.meter.exhausted)
        trace.emit("backtrack", f"backtracking from depth {state.depth} ({state.latest()})", node=state.id)
        return False

    async def _expand(self, state: Node, k: int) -> list[Node]:
        """Propose ``k`` next steps of ``state``, value them, attach them; finished ones are registered."""
        try:
            kids = await self.tree.expand(state, k)
            if self.options.evaluator == "prm":
                await self.tree.prm_values(kids)
            else:
                await self._judge(kids)
        finally:
            self._tally()
        state.children = kids
        for kid in kids:
            if not kid.terminal:
                best = self.best_open
                if best is None or (kid.depth, kid.value) > (best.depth, best.value):
                    self.best_open = kid
        return kids

    async def _judge(self, nodes: Sequence[Node]) -> None:
        """The model's own P(yes) for each node, asked concurrently; finished ones are registered with it as score."""
        try:
            answers = await gather(*(self._ask(n) for n in nodes))
            for node, sample in zip(nodes, answers, strict=True):
                node.value = p_yes(sample)
                if node.candidate is not None:
                    node.candidate.score = node.value
        finally:
            self.tree.register([n.candidate for n in nodes])

    async def _ask(self, node: Node) -> Sample | None:
        request, fmt = self.request, self.request.format
        if node.candidate is not None:
            steps, answer = fmt.split(node.candidate.text)
        else:
            steps, answer = fmt.steps(self.tree.prefix(node)), None
        shown = "\n".join(steps) or "(no steps yet)"
        final = f"\nFinal answer: {answer}" if answer else ""
        content = f"{problem_text(request.prompt)}\n\nReasoning so far:\n{shown}{final}\n\n{JUDGE_QUESTION}"
        # The think block is pre-closed so a thinking model's first token is its verdict.
        prompt = Prompt.chat([{"role": "user", "content": content}], prefix=fmt.think_open + fmt.think_close)
        top = min(JUDGE_TOP_LOGPROBS, self.engine.capabilities.max_top_logprobs)
        params = SamplingParams(max_tokens=1, temperature=0.0, logprobs=top)
        [sample] = await self.engine.ask(prompt, params, 1)
        return sample

    def _close(self, states: Sequence[Node]) -> list[Candidate]:
        """Unfinished states as ``length`` candidates, scored on the scale finished ones are."""
        closed = []
        for s in states:
            c = self.tree.close(s)
            if s.step_scores:
                c.step_scores = list(s.step_scores)
                c.score = aggregate(s.step_scores, self.options.aggregation)
            else:
                c.score = s.value
            closed.append(c)
        self.tree.register(closed)
        self._tally()
        return closed

    @staticmethod
    def _note(finished: Sequence[Node]) -> str:
        if not finished:
            return ""
        top = max(finished, key=lambda s: s.value if s.value is not None else -math.inf)
        value = "unscored" if top.value is None else f"{top.value:.2f}"
        return f", {len(finished)} finished (best {value}: answer {top.candidate.answer})"
