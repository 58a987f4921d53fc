"""Step trees for MCTS and Tree of Thoughts: nodes, and growing a node into children and valuing them."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import Field

from ponder.core.reasoning import THINK_CLOSE
from ponder.core.types import Sample
from ponder.strategies.base import Options, StrategyRequest
from ponder.strategies.meter import MeteredEngine, MeteredVerifier
from ponder.strategies.step_search import (
    Aggregation,
    Extraction,
    StepCore,
    answer_extraction_field,
    latest,
    step_max_tokens_field,
    temperature_field,
)
from ponder.strategies.trace import Candidate, Trace


@dataclass(eq=False)
class Node:
    """A partial solution in a search tree (or, with ``candidate`` set, a finished one) and what is known of it."""

    pieces: tuple[str, ...] = ()  # the generated steps, separators excluded
    tokens: int = 0  # generated along the path
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)
    prior: float = 1.0  # share of its siblings' sampling probability
    value: float | None = None  # its own evaluation (PRM, rollout or self-judgement)
    visits: int = 0
    value_sum: float = 0.0
    step_scores: tuple[float, ...] = ()
    candidate: Candidate | None = None  # the finished solution this node is, when it is one
    solved: bool = False  # finished, or every path below it is: nothing left to grow
    logprob: float | None = 0.0  # of the path, when the engine reports logprobs
    id: int = 0

    @property
    def depth(self) -> int:
        return len(self.pieces)

    @property
    def terminal(self) -> bool:
        return self.candidate is not None

    @property
    def mean(self) -> float:
        """Mean backed-up value (Q); its own value before any visit."""
        return self.value_sum / self.visits if self.visits else (self.value or 0.0)

    def latest(self, width: int = 60, think_close: str = THINK_CLOSE) -> str:
        """The last non-empty step (without the answer a final piece goes on to), shortened for a progress line."""
        return latest(self.pieces, width, think_close)

    def path(self) -> list[Node]:
        """From the root down to this node."""
        nodes, node = [], self
        while node is not None:
            nodes.append(node)
            node = node.parent
        return nodes[::-1]

    def leaves(self) -> list[Node]:
        """The nodes without children under (and including) this one."""
        if not self.children:
            return [self]
        return [leaf for c in self.children for leaf in c.leaves()]

    def count(self) -> int:
        return 1 + sum(c.count() for c in self.children)


class TreeOptions(Options):
    """Options every step-tree search shares."""

    max_depth: int = Field(32, ge=1, le=1000, description="Most steps along a path; a deeper path is not grown.")
    step_max_tokens: int = step_max_tokens_field()
    aggregation: Aggregation = Field(
        "min", description="How a finished solution's PRM step scores become its score: min, prod, last, mean."
    )
    temperature: float | None = temperature_field()
    answer_extraction: Extraction = answer_extraction_field()


def sample_logprob(sample: Sample) -> float | None:
    if sample.cumulative_logprob is not None:
        return sample.cumulative_logprob
    return sum(t.logprob for t in sample.logprobs) if sample.logprobs else None


def priors(logprobs: Sequence[float | None]) -> list[float]:
    """Siblings' priors: exp(logprob) normalised among them (a softmax), uniform when any logprob is missing."""
    if not logprobs:
        return []
    if any(lp is None for lp in logprobs):
        return [1.0 / len(logprobs)] * len(logprobs)
    top = max(logprobs)  # type: ignore[type-var]
    weights = [math.exp(lp - top) for lp in logprobs]  # type: ignore[operator]
    total = sum(weights)
    return [w / total for w in weights]


class StepTree(StepCore):
    """One request's tree: grow a node into distinct children, and value nodes with the PRM in batched calls."""

    def __init__(
        self,
        options: TreeOptions,
        request: StrategyRequest,
        engine: MeteredEngine,
        verifier: MeteredVerifier | None,
        trace: Trace,
        *,
        logprobs: bool = False,
    ) -> None:
        super().__init__(options, request, engine, verifier, trace, logprobs=logprobs)
        self.options: TreeOptions = options
        self.root = Node()
        self.nodes = 1

    async def expand(self, node: Node, n: int) -> list[Node]:
        """``n`` next steps of ``node`` in ONE extend call, as distinct children (not yet attached).

        A child that finished the solution is terminal, its candidate unscored; repeated steps are one child whose
        prior adds up its copies' probability.
        """
        kids: dict[str, Node] = {}
        weights: dict[str, list[float | None]] = {}
        for step in await self.step(node, n):
            lp = sample_logprob(step.sample)
            kid = Node((*node.pieces, step.piece), step.tokens, node, candidate=step.candidate)
            kid.logprob = None if lp is None or node.logprob is None else node.logprob + lp
            if kid.candidate is not None:
                kid.candidate.logprob = kid.logprob
            text = kid.candidate.text if kid.candidate else self.prefix(kid)
            kids.setdefault(text, kid)
            weights.setdefault(text, []).append(lp)
        shares = iter(priors([lp for lps in weights.values() for lp in lps]))
        for text, kid in kids.items():
            kid.prior = sum(next(shares) for _ in weights[text])
            kid.id = self.nodes
            self.nodes += 1
        return list(kids.values())

    async def rollout(self, node: Node) -> Candidate:
        """The rest of ``node``'s solution in one whole-solution sample (unscored, not yet registered)."""
        params = dataclasses.replace(self.params, token_cap=self.cap(self.left(node.tokens)))
        [s] = await self.engine.generate(self.prompt(node), params, 1)
        lp = sample_logprob(s)
        c = self.candidate(self.prefix(node) + s.text, node.tokens + s.num_tokens, s.finish_reason)
        c.logprob = None if lp is None or node.logprob is None else node.logprob + lp
        return c

    async def prm_values(self, nodes: Sequence[Node]) -> None:
        """PRM values in one batched call: a partial path's latest step score, a finished one's aggregate.

        Finished candidates are registered on the trace even when the call is cut short.
        """
        texts = [n.candidate.text if n.candidate else self.prefix(n) for n in nodes]
        done = [n.candidate for n in nodes]
        scores = await self.score_steps(texts, done, self.options.aggregation)
        for node, s in zip(nodes, scores, strict=True):
            node.step_scores = tuple(s)
            if node.candidate is not None:
                node.value = node.candidate.score
            else:
                node.value = s[-1] if s else 0.0
