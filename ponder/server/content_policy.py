"""Content policies and the model spec as one hard filter: violating candidates never win; if all violate, a refusal."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ponder.core.types import Prompt
from ponder.strategies.base import StrategyResult, best_distinct
from ponder.strategies.meter import Spent
from ponder.strategies.trace import Candidate, Trace
from ponder.verifiers.base import Problem

REFUSED = "content_filter"  # OpenAI's finish_reason for an answer its filter withheld


class ContentFilter:
    """The loaded policies (``PolicyVerifier``, ``SpecVerifier``), in order, applied to a strategy's candidates.

    Each policy offers ``check(problem, answers)`` (what each answer breaks), ``request_violations(problem)`` and a
    ``refusal``; a spec may also put itself in the model's context (``context``: the text of a system turn).
    """

    def __init__(self, policies: Sequence[Any]) -> None:
        self.policies = list(policies)
        self.context = next((p.context for p in self.policies if getattr(p, "context", None)), None)

    def in_context(self, prompt: Prompt) -> Prompt:
        """A chat prompt with the spec before the conversation, merged into the client's system turn if it leads
        (chat templates that take one system message keep working); raw prompts are the client's own text."""
        if self.context is None or prompt.messages is None:
            return prompt
        messages = list(prompt.messages)
        first = messages[0] if messages else {}
        if first.get("role") == "system" and isinstance(first.get("content"), str):
            messages[0] = {**first, "content": f"{self.context}\n\n{first['content']}"}
        else:
            messages.insert(0, {"role": "system", "content": self.context})
        return dataclasses.replace(prompt, messages=tuple(messages))

    def screen(self, problem: Problem, n: int, trace: Trace) -> StrategyResult | None:
        """The refusal, before any generation, of a request that breaks a rule about requests; else ``None``."""
        for policy in self.policies:
            found = policy.request_violations(problem)
            if found:
                trace.emit("policy", f"content policy: the request breaks {', '.join(v.rule for v in found)}")
                result = StrategyResult([self._refusal(policy) for _ in range(n)], Spent(), trace)
                result.content_filter = {
                    "policy": policy.name,
                    "checked": 0,
                    "rejected": 0,
                    "refused": True,
                    "violated": dict(Counter(v.rule for v in found)),
                    "reasons": sorted({v.reason for v in found}),
                }
                return result
        return None

    async def apply(self, result: StrategyResult, n: int, problem: Problem) -> None:
        """Replace the result's choices by its best compliant candidates (the strategy's own choices when they
        comply), padded with refusals when fewer than ``n`` comply; ``result.content_filter`` says what broke."""
        verdicts: dict[str, list[Any]] = {}  # a candidate's text -> its violations (a text is checked once)
        rejected_by: dict[str, Any] = {}  # a violating text -> the first policy it broke

        async def check(candidates: Sequence[Candidate]) -> None:
            todo = list(dict.fromkeys(c.text for c in candidates if c.text not in verdicts))
            verdicts.update({text: [] for text in todo})
            for policy in self.policies:
                if not todo:
                    break
                result.spent.verifier_calls += 1
                result.spent.verifier_items += len(todo)
                for text, found in zip(todo, await policy.check(problem, todo), strict=True):
                    if found:
                        verdicts[text] += found
                        rejected_by.setdefault(text, policy)
                todo = [text for text in todo if not verdicts[text]]  # rejected once is enough: no judge call

        await check(result.choices)
        pool = result.choices
        if any(verdicts[c.text] for c in result.choices):
            pool = [*result.choices, *result.trace.candidates]
            await check(pool)
        checked = list({id(c): c for c in pool}.values())
        compliant = [c for c in checked if not verdicts[c.text]]
        violated = Counter(rule for c in checked for rule in dict.fromkeys(v.rule for v in verdicts[c.text]))
        if len(compliant) < len(checked):
            result.trace.emit(
                "policy",
                f"content policy: {len(checked) - len(compliant)} of {len(checked)} candidates violate it "
                f"({', '.join(sorted(violated))})",
                compliant=len(compliant),
            )
        chosen_comply = all(not verdicts[c.text] for c in result.choices)
        choices = result.choices if chosen_comply else best_distinct(compliant, n)
        first = next((rejected_by[c.text] for c in checked if c.text in rejected_by), None)
        if len(choices) < n and first is not None:
            choices = [*choices, *(self._refusal(first) for _ in range(n - len(choices)))]
        result.choices = choices
        result.content_filter = {
            "policy": first.name if first is not None else None,
            "checked": len(checked),
            "rejected": len(checked) - len(compliant),
            "refused": not compliant,
            "violated": dict(violated),
        }

    @staticmethod
    def _refusal(policy: Any) -> Candidate:
        return Candidate(policy.refusal, 0, REFUSED, answer=None)  # type: ignore[arg-type]


def policy_filter(policies: Sequence[Any]) -> ContentFilter | None:
    """A filter over a strategy's result for the loaded policies and spec; ``None`` when there are none."""
    return ContentFilter(policies) if policies else None
