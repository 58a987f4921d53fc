"""Measure how a policy copes with how people ask: phrasings, system prompts, mixed-digit sums and off-topic prompts.

Greedy, on held-out test problems, graded by reasoning-gym. Phrasings the training mix uses and phrasings it never
uses are reported apart, as are the issue's own examples. ``python -m ponder.training.phrasing_eval MODEL``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from ponder.tasks import Problem, generate_problems, grade_output, parse_output
from ponder.tasks.phrasings import (
    HELD_OUT_OFF_TOPIC,
    HELD_OUT_SYSTEM,
    REFUSAL,
    TRAIN_QUESTIONS,
    off_topic_prompt,
    rephrased,
    two_term_problem,
    worded,
)
from ponder.tasks.traces import THINK_CLOSE, THINK_OPEN
from ponder.training.chat_mix import extra_seeds
from ponder.training.measure import _hf_generate, _vllm_generate

EXAMPLES = (("What is 12+7?", "19"), ("What's 467 + 914?", "1381"), ("3*41?", "123"), ("Compute 25 * 4.", "100"))


def _sums(count: int) -> list[Problem]:
    """``count`` held-out two-term sums (``+`` only) of numbers up to two digits."""
    out = []
    for seed in extra_seeds("test", 20 * count):
        p = two_term_problem("test", seed)
        if "+" in p.expression:
            out.append(p)
        if len(out) == count:
            return out
    raise ValueError("not enough sums drawn")


def well_formed(text: str) -> bool:
    """The think block opens first and closes exactly once."""
    return text.lstrip().startswith(THINK_OPEN) and text.count(THINK_CLOSE) == 1 and text.count(THINK_OPEN) == 1


def is_refusal(text: str) -> bool:
    return parse_output(text).answer == REFUSAL


def arithmetic_sets(count: int) -> dict[str, tuple[list[Problem], str | None]]:
    """Name -> (problems as asked, system prompt or None)."""
    test = generate_problems("test", count)
    sums = _sums(count)
    held_out = worded(test, "held_out")
    return {
        "template": (test, None),
        "trained_phrasings": (rephrased(test, TRAIN_QUESTIONS, "trained"), None),
        "held_out_phrasings": (held_out, None),
        "held_out_phrasings_with_system": (held_out, HELD_OUT_SYSTEM[0]),
        "held_out_phrasings_with_instruction": (worded(test, "held_out_instruction"), None),
        "two_term_sums_template": (sums, None),
        "two_term_sums_held_out_phrasings": (worded(sums, "held_out", "sums"), None),
    }


def _chat(question: str, system: str | None) -> list[dict[str, str]]:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]


def _set_summary(problems: list[Problem], outputs: list[str]) -> dict[str, Any]:
    hits = [grade_output(p, o) for p, o in zip(problems, outputs, strict=True)]
    levels = sorted({p.level for p in problems})
    return {
        "n": len(problems),
        "greedy": sum(hits) / len(hits),
        "by_level": {
            str(lv): sum(h for h, p in zip(hits, problems, strict=True) if p.level == lv)
            / sum(p.level == lv for p in problems)
            for lv in levels
        },
        "refused": sum(map(is_refusal, outputs)) / len(outputs),
        "well_formed": sum(map(well_formed, outputs)) / len(outputs),
        "examples": [
            {"question": p.question, "answer": p.answer, "output": o}
            for p, o in list(zip(problems, outputs, strict=True))[:3]
        ],
    }


def measure_phrasings(model_dir: str, *, count: int = 200, engine: str = "hf", max_new_tokens: int = 160) -> dict:
    """Greedy accuracy per phrasing set, refusal on held-out off-topic prompts, think-block form, the examples."""
    generate = _vllm_generate if engine == "vllm" else _hf_generate
    sets = arithmetic_sets(count)
    off_topic = [off_topic_prompt(random.Random(f"off_topic_eval:{i}"), HELD_OUT_OFF_TOPIC) for i in range(count)]
    chats = [_chat(p.question, system) for problems, system in sets.values() for p in problems]
    chats += [_chat(q, None) for q in off_topic] + [_chat(q, None) for q, _ in EXAMPLES]
    started = time.time()
    outputs = [
        o[0]
        for o in generate(model_dir, chats, n=1, temperature=0.0, max_new_tokens=max_new_tokens, batch_size=256, seed=0)
    ]
    seconds = time.time() - started
    result: dict[str, Any] = {"model": str(model_dir), "count": count, "engine": engine, "seconds": round(seconds, 1)}
    cursor = 0
    for name, (problems, _) in sets.items():
        result[name] = _set_summary(problems, outputs[cursor : cursor + len(problems)])
        cursor += len(problems)
    refusals = outputs[cursor : cursor + count]
    result["off_topic_held_out"] = {
        "n": count,
        "refused": sum(map(is_refusal, refusals)) / count,
        "well_formed": sum(map(well_formed, refusals)) / count,
        "examples": [{"prompt": q, "output": o} for q, o in list(zip(off_topic, refusals, strict=True))[:5]],
    }
    cursor += count
    result["issue_examples"] = [
        {"question": q, "reference": a, "output": o, "correct": parse_output(o).answer == a}
        for (q, a), o in zip(EXAMPLES, outputs[cursor:], strict=True)
    ]
    arithmetic = [s for name, s in result.items() if isinstance(s, dict) and "greedy" in s]
    result["think_well_formed_all"] = (
        sum(s["well_formed"] * s["n"] for s in arithmetic) + result["off_topic_held_out"]["well_formed"] * count
    ) / (sum(s["n"] for s in arithmetic) + count)
    return result


def format_table(result: dict[str, Any]) -> str:
    """A markdown table of a ``measure_phrasings`` result."""
    lines = ["| set | n | greedy | refused | think block well formed |", "|---|---|---|---|---|"]
    for name, s in result.items():
        if isinstance(s, dict) and "n" in s:
            greedy = f"{s['greedy']:.1%}" if "greedy" in s else "-"
            lines.append(f"| {name} | {s['n']} | {greedy} | {s['refused']:.1%} | {s['well_formed']:.1%} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ponder.training.phrasing_eval", description=__doc__)
    parser.add_argument("model_dir")
    parser.add_argument("--count", type=int, default=200, help="Problems (and off-topic prompts) per set.")
    parser.add_argument("--engine", choices=("hf", "vllm"), default="hf")
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--out", default=None, help="Write the result as JSON here.")
    args = parser.parse_args(argv)
    result = measure_phrasings(args.model_dir, count=args.count, engine=args.engine, max_new_tokens=args.max_new_tokens)
    result["command"] = "python -m ponder.training.phrasing_eval " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(format_table(result))
    for ex in result["issue_examples"]:
        print(f"{ex['question']!r} -> {ex['output']!r} ({'right' if ex['correct'] else 'wrong'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
