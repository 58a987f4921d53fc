"""Step trees for MCTS and Tree of Thoughts: nodes, and the engine and verifier calls that grow and score them."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from ponder.core.reasoning import THINK_CLOSE
from ponder.core.types import Sample
from ponder.strategies.base import Options, StrategyRequest, gather
from ponder.strategies.meter import BudgetExhausted, MeteredEngine, MeteredVerifier, is_step_end
from ponder.strategies.scoring import aggregate, score_candidates
from ponder.strategies.steps import extract_answer
from ponder.strategies.trace import Candidate, Trace

DEFAULT_SIZE = 16  # N, the solutions a search aims for, when the budget sets no max_samples
DIVERSE_TEMPERATURE = 0.8  # used when the request is greedy: identical siblings would make the tree a chain
Aggregation = Literal["min", "prod", "last", "mean"]
Extraction = Literal["content", "last_number", "boxed"]


def size_from(budget: Any) -> int:
    """N: budget.max_samples, else 16."""
    return budget.max_samples or DEFAULT_SIZE


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
        steps = (p.partition(think_close)[0].strip() for p in reversed(self.pieces))
        step = next((p for p in steps if p), "")
        return step if len(step) <= width else step[: width - 3] + "..."

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
    step_max_tokens: int = Field(
        64, ge=1, le=32768, description="Most tokens per step; a step hitting it ends its path ('length')."
    )
    aggregation: Aggregation = Field(
        "min", description="How a finished solution's PRM step scores become its score: min, prod, last, mean."
    )
    temperature: float | None = Field(
        None, ge=0.0, le=2.0, description=f"Sampling temperature; default the request's, or {DIVERSE_TEMPERATURE} if 0."
    )
    answer_extraction: Extraction = Field(
        "content", description="What counts as the same answer: the visible content, its last number, or \\boxed{}."
    )


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


class StepTree:
    """One request's tree machinery: grow a node by one step, roll out, close, and score nodes in batched calls."""

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
        self.options = options
        self.request = request
        self.engine = engine
        self.verifier = verifier
        self.trace = trace
        self.format = request.format
        given = request.params.temperature
        temperature = options.temperature if options.temperature is not None else (given or DIVERSE_TEMPERATURE)
        # max_tokens caps whole solutions, not calls: it is applied along each path as a token_cap (see left()).
        self.params = dataclasses.replace(
            request.params, temperature=temperature, logprobs=0 if logprobs else None, max_tokens=None
        )
        self.root = Node()
        self.nodes = 1
        self.extended = 0  # step continuations generated
        self.expansions = 0  # extend calls made
        self.finished: list[Candidate] = []  # every solution registered on the trace, in order

    def prefix(self, node: Node) -> str:
        return self.format.prefix(list(node.pieces))

    def prompt(self, node: Node):
        return self.request.prompt.continued(self.prefix(node))

    def left(self, tokens: int) -> int | None:
        """Tokens a path may still generate under the request's max_tokens (``None``: no limit)."""
        limit = self.request.params.max_tokens
        return None if limit is None else limit - tokens

    def stuck(self, node: Node) -> bool:
        """Whether the request's max_tokens leaves this path nothing more to generate."""
        left = self.left(node.tokens)
        return left is not None and left <= 0

    def _cap(self, *caps: int | None) -> int | None:
        known = [c for c in (*caps, self.params.token_cap) if c is not None]
        return min(known) if known else None

    async def expand(self, node: Node, n: int) -> list[Node]:
        """``n`` next steps of ``node`` in ONE extend call, as distinct children (not yet attached).

        A child that finished the solution is terminal, its candidate unscored; repeated steps are one child whose
        prior adds up its copies' probability.
        """
        params = dataclasses.replace(
            self.params, token_cap=self._cap(self.options.step_max_tokens, self.left(node.tokens))
        )
        samples = await self.engine.extend(self.prompt(node), params, n)
        self.expansions += 1
        self.extended += len(samples)
        base = self.prefix(node)
        opened = [s for s in samples if is_step_end(s, self.engine.separator) and self.format.is_final(s.text)]
        completed = iter(await gather(*(self._complete(node, s) for s in opened)))
        kids: dict[str, Node] = {}
        weights: dict[str, list[float | None]] = {}
        for s in samples:
            lp = sample_logprob(s)
            path_lp = None if lp is None or node.logprob is None else node.logprob + lp
            tokens = node.tokens + s.num_tokens
            if not is_step_end(s, self.engine.separator):
                text = base + s.text
                kid = Node(
                    (*node.pieces, s.text), tokens, node, candidate=self.candidate(text, tokens, s.finish_reason)
                )
            elif self.format.is_final(s.text):
                done = next(completed)
                if done is None:  # the budget refused the rest of this answer
                    done = self.candidate(base + s.text + self.engine.separator, tokens, "length")
                kid = Node((*node.pieces, s.text), done.num_tokens, node, candidate=done)
                text = done.text
            else:
                text = base + s.text + self.engine.separator
                kid = Node((*node.pieces, s.text), tokens, node)
            kid.logprob = path_lp
            if kid.candidate is not None:
                kid.candidate.logprob = path_lp
            kids.setdefault(text, kid)
            weights.setdefault(text, []).append(lp)
        flat = [lp for lps in weights.values() for lp in lps]
        shares = iter(priors(flat))
        for text, kid in kids.items():
            kid.prior = sum(next(shares) for _ in weights[text])
            kid.id = self.nodes
            self.nodes += 1
        return list(kids.values())

    async def _complete(self, node: Node, piece: Sample) -> Candidate:
        """Generate the rest of an answer whose first line a step call stopped at."""
        text = self.prefix(node) + piece.text + self.engine.separator
        tokens = node.tokens + piece.num_tokens
        left = self.left(tokens)
        if left is None or left > 0:
            params = dataclasses.replace(self.params, token_cap=self._cap(left))
            try:
                rest = await self.engine.generate(self.request.prompt.continued(text), params, 1)
            except BudgetExhausted:
                rest = []
            if rest:
                return self.candidate(text + rest[0].text, tokens + rest[0].num_tokens, rest[0].finish_reason)
        return self.candidate(text, tokens, "length")

    async def rollout(self, node: Node) -> Candidate:
        """The rest of ``node``'s solution in one whole-solution sample (unscored, not yet registered)."""
        params = dataclasses.replace(self.params, token_cap=self._cap(self.left(node.tokens)))
        [s] = await self.engine.generate(self.prompt(node), params, 1)
        lp = sample_logprob(s)
        c = self.candidate(self.prefix(node) + s.text, node.tokens + s.num_tokens, s.finish_reason)
        c.logprob = None if lp is None or node.logprob is None else node.logprob + lp
        return c

    def close(self, node: Node) -> Candidate:
        """An unfinished path as a ``length`` candidate (unscored, not yet registered)."""
        return self.candidate(self.prefix(node), node.tokens, "length")

    def candidate(self, text: str, tokens: int, finish_reason: Any) -> Candidate:
        c = Candidate(text, tokens, finish_reason)
        c.answer = extract_answer(text, self.options.answer_extraction)
        return c

    def register(self, candidates: Sequence[Candidate]) -> None:
        for c in candidates:
            self.finished.append(self.trace.add(c, message=""))

    async def score(self, candidates: Sequence[Candidate]) -> None:
        """Score finished candidates with the verifier in one call, then register them (even when cut short)."""
        try:
            await score_candidates(self.verifier, self.request, candidates, self.options.aggregation)
        finally:
            self.register(candidates)

    async def prm_values(self, nodes: Sequence[Node]) -> None:
        """PRM values in one batched call: a partial path's latest step score, a finished one's aggregate.

        Finished candidates are registered on the trace even when the call is cut short.
        """
        done = [n.candidate for n in nodes if n.candidate is not None]
        steps = [self.format.steps(n.candidate.text if n.candidate else self.prefix(n)) for n in nodes]
        asked = [i for i, s in enumerate(steps) if s]  # a path with no step yet has nothing to score
        scores: list[list[float]] = [[] for _ in nodes]
        try:
            if asked and self.verifier is not None:
                got = await self.verifier.score_steps(self.request.problem, [steps[i] for i in asked])
                for i, s in zip(asked, got, strict=True):
                    scores[i] = s
            for node, s in zip(nodes, scores, strict=True):
                node.step_scores = tuple(s)
                if node.candidate is not None:
                    node.candidate.step_scores = list(s)
                    node.candidate.score = aggregate(s, self.options.aggregation)
                    node.value = node.candidate.score
                else:
                    node.value = s[-1] if s else 0.0
        finally:
            self.register(done)
