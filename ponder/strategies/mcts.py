"""The ``mcts`` strategy: Monte Carlo tree search over reasoning steps, valued by a PRM or by scored rollouts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from ponder.core.errors import InvalidRequestError
from ponder.core.protocols import Engine, Verifier, is_step_verifier
from ponder.strategies.base import Search, Strategy, StrategyResult, best_distinct, gather, rank_key
from ponder.strategies.meter import BudgetExhausted
from ponder.strategies.registry import register
from ponder.strategies.step_search import solutions_wanted
from ponder.strategies.trace import Candidate
from ponder.strategies.tree import Node, StepTree, TreeOptions


def puct(parent: Node, child: Node, c: float) -> float:
    """AlphaZero's PUCT: Q + c * P * sqrt(N(parent)) / (1 + N(child))."""
    return child.mean + c * child.prior * math.sqrt(parent.visits) / (1 + child.visits)


def uct(parent: Node, child: Node, c: float) -> float:
    """UCT (Kocsis & Szepesvari 2006): Q + c * sqrt(ln N(parent) / N(child)); an unvisited child goes first."""
    if child.visits == 0:
        return math.inf
    return child.mean + c * math.sqrt(math.log(max(parent.visits, 1)) / child.visits)


def select(root: Node, rule: str = "puct", c: float = 1.0) -> Node:
    """Descend from ``root`` by the highest ``rule`` score (first child on ties) to a leaf, skipping solved children."""
    formula = puct if rule == "puct" else uct
    node = root
    while open_children := [child for child in node.children if not child.solved]:
        parent = node
        node = max(open_children, key=lambda child: formula(parent, child, c))
    return node


def mark_solved(node: Node) -> None:
    """Mark ``node`` solved if it is finished or all its children are, and so on up: selection skips solved nodes."""
    while node is not None and (node.terminal or (node.children and all(c.solved for c in node.children))):
        node.solved = True
        node = node.parent


def backup(node: Node, values: list[float]) -> None:
    """Add ``values`` (one visit each) to ``node`` and every ancestor: visit counts and value sums (Q is their mean)."""
    for a in node.path():
        a.visits += len(values)
        a.value_sum += sum(values)


def has_terminal(node: Node) -> bool:
    return node.terminal or any(has_terminal(c) for c in node.children)


def most_visited_terminal(root: Node) -> Node | None:
    """The finished node at the end of the most-visited path (mean value breaks ties), if one is in the tree."""
    node = root
    while not node.terminal:
        options = [c for c in node.children if has_terminal(c)]
        if not options:
            return None
        node = max(options, key=lambda c: (c.visits, c.mean))
    return node


@dataclass
class MCTSResult(StrategyResult):
    """MCTS's result with what the search did."""

    simulations: int = 0
    tree_size: int = 1
    root_children: list[dict[str, Any]] = field(default_factory=list)
    finished: int = 0
    stop_reason: str | None = None


@register("mcts")
class MCTS(Strategy):
    """Monte Carlo tree search over reasoning steps (as in rStar / ReST-MCTS*; PUCT from Silver et al. 2017).

    Each simulation selects from the root by PUCT (or UCT) down to a leaf, expands it with ``expansion_width`` next
    steps drawn in one engine call from the leaf's cached prefix, evaluates each new child (``value="prm"``: the PRM
    score of its latest step; ``"rollout"``: the verifier's score of one whole solution sampled from it), and backs the
    values up (one visit per value; Q is the mean). A child that finishes the solution is a terminal candidate, valued
    by the verifier (a PRM's step scores aggregated by ``aggregation``); a node whose paths have all finished (or hit
    ``max_depth``) is solved and no longer selected, so every simulation grows the tree. Priors
    (PUCT): exp(step logprob) normalised among siblings when the engine reports logprobs, else uniform, with repeated
    samples of a step merged into one child that adds up their shares. The search stops after ``simulations``, when
    the sample budget (finished solutions, rollouts included) is spent, or when every leaf is finished; it returns the
    best finished candidates by score (``final="score"``) or the end of the most-visited path first (``"visits"``).
    """

    needs_verifier = True
    needs_prefix_continuation = True

    class Options(TreeOptions):
        simulations: int | None = Field(
            None,
            ge=1,
            le=10000,
            description="Simulations (select, expand, evaluate, back up); default N = budget.max_samples, else 16. "
            "The sample budget (finished solutions and rollouts) may end the search sooner.",
        )
        expansion_width: int = Field(3, ge=1, le=64, description="Next steps sampled (one engine call) per expansion.")
        selection: Literal["puct", "uct"] = Field(
            "puct", description="Child selection: puct (prior-weighted, AlphaZero) or uct (UCB1)."
        )
        c_puct: float = Field(1.0, ge=0.0, le=100.0, description="PUCT exploration constant.")
        c_uct: float = Field(1.41, ge=0.0, le=100.0, description="UCT exploration constant.")
        value: Literal["prm", "rollout"] = Field(
            "prm",
            description="A new node's value: prm (the PRM score of its latest step; needs a step verifier) or "
            "rollout (the verifier's score of one whole solution sampled from it; each rollout is a candidate).",
        )
        final: Literal["score", "visits"] = Field(
            "score",
            description="Final answer: the best finished candidate by verifier score, or the finished node at the "
            "end of the most-visited path.",
        )

    Result = MCTSResult

    def check(self, engine: Engine, verifier: Verifier | None) -> None:
        super().check(engine, verifier)
        if self.options.value == "prm" and not is_step_verifier(verifier):
            raise InvalidRequestError(
                f"mcts with value='prm' needs a step verifier (a PRM); '{verifier.name}' scores whole answers only. "
                "Use value='rollout' to value nodes by scored rollouts.",
                param="verifier",
            )

    async def explore(self, search: Search[MCTSResult]) -> list[Candidate]:
        o, result, engine = self.options, search.result, search.engine
        total = o.simulations or solutions_wanted(search.budget)
        c = o.c_puct if o.selection == "puct" else o.c_uct
        wants_priors = o.selection == "puct" and engine.capabilities.logprobs
        tree = StepTree(o, search.request, engine, search.verifier, search.trace, logprobs=wants_priors)
        stop, done = "simulations", 0
        samples = engine.meter.limit("max_samples")
        for sim in range(1, total + 1):
            if samples is not None and engine.meter.spent.samples >= samples:
                stop = "max_samples"  # no call could be admitted: the tree cannot grow
                break
            node = select(tree.root, o.selection, c)
            try:
                line, data = await self._simulate(tree, node)
            except BudgetExhausted as cut:
                stop = cut.limit
                break
            done = sim
            self._record(result, tree, done, None)
            best = best_distinct([x for x in tree.finished if x.finish_reason == "stop"], 1)
            so_far = best[0].answer if best else "none"
            search.trace.emit("simulation", f"sim {sim}: {line}, best so far {so_far}", sim=sim, **data)
            if engine.meter.exhausted:
                stop = engine.meter.exhausted
                break
            if tree.root.solved:
                stop = "tree_exhausted"
                break
        choices = await self._choose(tree, search.request.n)
        self._record(result, tree, done, stop)
        return choices

    async def _simulate(self, tree: StepTree, node: Node) -> tuple[str, dict[str, Any]]:
        """One simulation from the selected ``node``: a progress line and its data."""
        o = self.options
        if node.depth >= o.max_depth or tree.stuck(node):
            node.candidate = tree.close(node)  # no room to grow: the path ends here, unfinished
            await tree.score([node.candidate], self.options.aggregation)
            node.value = node.candidate.score if node.candidate.score is not None else 0.0
            backup(node, [node.value])
            mark_solved(node)
            return f"closed depth {node.depth} ({node.latest()}) unfinished, value {node.value:.2f}", {
                "node": node.id,
                "value": node.value,
            }
        kids = await tree.expand(node, o.expansion_width)
        if o.value == "prm":
            await tree.prm_values(kids)
        else:
            await self._rollouts(tree, kids)
        kids = [k for k in kids if k.value is not None]  # a rollout the budget refused leaves its child out
        if not kids:
            raise BudgetExhausted(tree.engine.meter.exhausted or "max_samples")
        for k in kids:
            k.visits, k.value_sum = 1, k.value
            k.solved = k.terminal
        node.children = kids
        backup(node, [k.value for k in kids])
        mark_solved(node)
        top = max(kids, key=lambda k: k.value)
        finished = sum(k.terminal for k in kids)
        ended = f", {finished} finished" if finished else ""
        step = f"{top.latest()} -> answer {top.candidate.answer}" if top.terminal else top.latest()
        return f"expanded depth {top.depth} ({step}), value {top.value:.2f}{ended}", {
            "node": node.id,
            "depth": top.depth,
            "value": top.value,
            "children": [
                {"id": k.id, "step": k.pieces[-1], "value": k.value, "prior": k.prior, "terminal": k.terminal}
                for k in kids
            ],
        }

    async def _rollouts(self, tree: StepTree, kids: list[Node]) -> None:
        """Value each new child by the verifier's score of a finished solution: its own, or one rolled out from it."""
        open_kids = [k for k in kids if not k.terminal]
        rolled = await gather(*(tree.rollout(k) for k in open_kids))
        valued = [(k, k.candidate) for k in kids if k.terminal]
        valued += [(k, r) for k, r in zip(open_kids, rolled, strict=True) if r is not None]
        await tree.score([cand for _, cand in valued], self.options.aggregation)
        for k, cand in valued:
            k.value = cand.score if cand.score is not None else 0.0

    async def _choose(self, tree: StepTree, n: int) -> list[Candidate]:
        finished = list(tree.finished)
        if len(finished) < n:  # too few solutions finished: complete the best open paths while the budget allows
            open_leaves = sorted(
                (leaf for leaf in tree.root.leaves() if not leaf.terminal and leaf.depth), key=lambda x: -x.mean
            )
            completed = [await self._complete(tree, leaf) for leaf in open_leaves[: n - len(finished)]]
            await tree.score(completed, self.options.aggregation)
            finished += completed
        if self.options.final == "visits" and (end := most_visited_terminal(tree.root)) is not None:
            chosen = end.candidate
            return best_distinct(finished, n, key=lambda x: (x is chosen, *rank_key(x)))
        return best_distinct(finished, n)

    @staticmethod
    async def _complete(tree: StepTree, leaf: Node) -> Candidate:
        """The leaf's solution finished by one rollout; the open path as it is when the budget refuses the call."""
        try:
            return await tree.rollout(leaf)
        except BudgetExhausted:
            return tree.close(leaf)

    @staticmethod
    def _record(result: MCTSResult, tree: StepTree, simulations: int, stop: str | None) -> None:
        """Keep the figures current: a time cut can end the search anywhere."""
        result.simulations, result.tree_size, result.finished = simulations, tree.root.count(), len(tree.finished)
        result.root_children = [
            {"step": k.pieces[-1], "visits": k.visits, "value": round(k.mean, 4), "prior": round(k.prior, 4)}
            for k in tree.root.children
        ]
        result.stop_reason = stop

    def finish(self, result: MCTSResult, choices: list[Candidate], exhausted: str | None) -> MCTSResult:
        if exhausted:
            result.stop_reason = exhausted
        return super().finish(result, choices, exhausted)
