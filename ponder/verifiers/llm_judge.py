"""LLM-as-a-judge: the served model says whether an answer is correct; the score is its P("yes") against "no"."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Sequence
from typing import Any

from ponder.core.reasoning import THINK_TAGS
from ponder.core.types import Prompt, SamplingParams
from ponder.verifiers.base import Problem, problem_text, split_completion

DEFAULT_TEMPLATE = (
    "Here is a problem and a proposed answer.\n\n"
    "Problem:\n{problem}\n\n"
    "Proposed answer:\n{answer}\n\n"
    "Is the proposed answer correct? Reply with yes or no."
)
REFERENCE_NOTE = "\n\n(The reference answer is: {reference})"
TOP_LOGPROBS = 20


def check_template(template: str) -> str:
    """``template`` if it formats with ``{problem}``, ``{answer}`` (and optionally ``{reference}``); else ValueError."""
    if "{answer}" not in template:
        raise ValueError("a judge template must contain {answer} (and usually {problem})")
    try:
        template.format(problem="", answer="", reference="")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"bad judge template ({exc!r}): only {{problem}}, {{answer}} and {{reference}} may be used; "
            "write literal braces as {{ and }}"
        ) from None
    return template


def yes_probability(
    top: Iterable[tuple[str, float]], yes: Sequence[str] = ("yes",), no: Sequence[str] = ("no",)
) -> float:
    """P(yes) / (P(yes) + P(no)) over the alternatives' logprobs, tokens stripped and lowercased; 0.5 if neither."""
    p_yes = p_no = 0.0
    seen: set[str] = set()
    for token, logprob in top:
        if token in seen:
            continue
        seen.add(token)
        key = token.strip().lower()
        if key in yes:
            p_yes += math.exp(logprob)
        elif key in no:
            p_no += math.exp(logprob)
    return 0.5 if p_yes + p_no == 0.0 else p_yes / (p_yes + p_no)


class LLMJudge:
    """Asks ``engine`` (greedy, one token, top-20 logprobs) whether each answer is correct, concurrently.

    The answer shown to the judge is the visible content (the whole completion when there is none).
    ``prefix`` is a partial assistant turn to continue from, e.g. ``"<think></think>"`` so that a thinking model
    answers at once instead of opening its reasoning.
    """

    step_level = False

    kind = "llm_judge"
    source = None

    def __init__(
        self,
        engine: Any,
        template: str = DEFAULT_TEMPLATE,
        *,
        name: str = "llm_judge",
        prefix: str = "",
        yes: Sequence[str] = ("yes",),
        no: Sequence[str] = ("no",),
    ) -> None:
        caps = engine.capabilities
        if not caps.logprobs:
            raise ValueError(
                f"the llm_judge verifier needs an engine that returns logprobs; {engine.model_id} does not"
            )
        if prefix and not caps.prefix_continuation:
            raise ValueError(
                f"the llm_judge prefix needs prefix continuation, which {engine.model_id} does not support"
            )
        self.engine = engine
        self.template = check_template(template)
        self.name = name
        self.prefix = prefix
        self.yes = tuple(w.lower() for w in yes)
        self.no = tuple(w.lower() for w in no)
        self.params = SamplingParams(max_tokens=1, temperature=0.0, logprobs=min(TOP_LOGPROBS, caps.max_top_logprobs))

    def bind(self, engine: Any) -> LLMJudge:
        """The same judge over another engine (e.g. the request's metered wrapper, so its tokens are counted)."""
        return LLMJudge(engine, self.template, name=self.name, prefix=self.prefix, yes=self.yes, no=self.no)

    def render(self, problem: Problem, answer: str, reference: str | None = None) -> str:
        """The judge's user message for one answer."""
        _, content, _ = split_completion(answer, THINK_TAGS)
        shown = content.strip() or answer.strip()
        question = problem_text(problem)
        if reference is not None and "{reference}" not in self.template:
            question += REFERENCE_NOTE.format(reference=reference)
        return self.template.format(problem=question, answer=shown, reference=reference or "")

    async def _one(self, problem: Problem, answer: str, reference: str | None) -> float:
        prompt = Prompt.chat([{"role": "user", "content": self.render(problem, answer, reference)}], prefix=self.prefix)
        [sample] = await self.engine.generate(prompt, self.params, 1)
        if not sample.logprobs:
            return 0.5
        first = sample.logprobs[0]
        return yes_probability([(first.token, first.logprob), *first.top], self.yes, self.no)

    async def score(self, problem: Problem, answers: Sequence[str], reference: str | None = None) -> list[float]:
        """P("yes") per answer, in [0, 1]; 0.5 when the judge said neither yes nor no."""
        return list(await asyncio.gather(*(self._one(problem, answer, reference) for answer in answers)))
