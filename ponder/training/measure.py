"""Measure a policy in process: greedy accuracy and pass@k per difficulty level on held-out problems."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ponder.tasks import ALL_LEVELS, generate_problems, grade_output


def _hf_generate(
    model_dir: str,
    prompts: list[list[dict]],
    *,
    n: int,
    temperature: float,
    max_new_tokens: int,
    batch_size: int,
    seed: int,
) -> list[list[str]]:
    """``n`` completions per chat with transformers (greedy when ``temperature`` is 0)."""
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32").eval()
    torch.manual_seed(seed)
    per_call = max(1, batch_size // n)
    outputs: list[list[str]] = []
    desc = "greedy" if temperature == 0 else f"sampling n={n} T={temperature}"
    for start in tqdm(range(0, len(prompts), per_call), desc=desc, unit="batch"):
        chats = prompts[start : start + per_call]
        texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        sampling = (
            {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0}
            if temperature
            else {"do_sample": False}
        )
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, num_return_sequences=n, **sampling)
        decoded = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        outputs.extend(decoded[i * n : (i + 1) * n] for i in range(len(chats)))
    return outputs


def _vllm_generate(
    model_dir: str,
    prompts: list[list[dict]],
    *,
    n: int,
    temperature: float,
    max_new_tokens: int,
    batch_size: int,
    seed: int,
) -> list[list[str]]:
    """The same with vLLM's offline ``LLM`` (call under ``if __name__ == "__main__":``: vLLM spawns workers)."""
    from vllm import LLM, SamplingParams

    llm = _vllm_generate.__dict__.get("llm")
    if llm is None:
        llm = LLM(
            model=model_dir,
            dtype="float32",
            max_model_len=512,
            enforce_eager=True,
            gpu_memory_utilization=0.1,
            seed=seed,
        )
        _vllm_generate.llm = llm  # type: ignore[attr-defined]
    # No per-request seed: seeded requests crash vLLM 0.32's CPU worker ("CPU Generator does not use offset");
    # the engine-wide seed above makes runs repeatable instead.
    params = SamplingParams(n=n, temperature=temperature, top_p=1.0, max_tokens=max_new_tokens)
    results = llm.chat(prompts, params, use_tqdm=True)
    return [[c.text for c in sorted(r.outputs, key=lambda c: c.index)] for r in results]


def _training_questions(model_dir: str) -> set[str] | None:
    """The question texts of the model's generated training data (None when it was trained on a file)."""
    config = Path(model_dir) / "training_config.json"
    if not config.is_file():
        return None
    info = json.loads(config.read_text())
    args, data = info.get("args", {}), info.get("data", {})
    if args.get("dataset") or "train" not in data:
        return None
    return {p.question for p in generate_problems("train", data["train"]["count"], args["levels"], args["tasks"])}


def _graded_rows(
    problems: list[Any], greedy: list[str], sampled: list[list[str]], trained_on: set[str] | None
) -> list[dict[str, Any]]:
    """Per problem: its level and task, whether greedy and any sample solved it, the sampled accuracy, seen or not."""
    rows = []
    for i, p in enumerate(problems):
        hits = [grade_output(p, s) for s in sampled[i]] if sampled else []
        rows.append(
            {
                "level": p.level,
                "task": p.task,
                "greedy": grade_output(p, greedy[i]),
                "pass": any(hits),
                "sample_acc": sum(hits) / len(hits) if hits else None,
                "seen": trained_on is not None and p.question in trained_on,
            }
        )
    return rows


def _summary(subset: list[dict[str, Any]], samples: int, trained_on: set[str] | None) -> dict[str, Any]:
    """Greedy accuracy, pass@``samples`` and mean sampled accuracy of some graded rows, and how many were seen."""
    n = len(subset)
    out = {"n": n, "greedy": sum(r["greedy"] for r in subset) / n}
    if samples:
        out[f"pass@{samples}"] = sum(r["pass"] for r in subset) / n
        out["sample_acc"] = sum(r["sample_acc"] for r in subset) / n
    if trained_on is not None:  # the same question text occurs among the training problems
        unseen = [r for r in subset if not r["seen"]]
        out["seen_in_training"] = 1 - len(unseen) / n
        out["greedy_unseen"] = sum(r["greedy"] for r in unseen) / len(unseen) if unseen else None
    return out


def measure_policy(
    model_dir: str,
    *,
    split: str = "test",
    count: int = 200,
    levels: Sequence[int] = ALL_LEVELS,
    samples: int = 16,
    temperature: float = 0.8,
    max_new_tokens: int = 160,
    batch_size: int = 256,
    engine: str = "hf",
    seed: int = 0,
) -> dict[str, Any]:
    """Greedy accuracy, pass@``samples`` and mean sampled accuracy, overall and per level."""
    problems = generate_problems(split, count, levels)
    prompts = [p.prompt_messages() for p in problems]
    generate = _vllm_generate if engine == "vllm" else _hf_generate
    kwargs = {"max_new_tokens": max_new_tokens, "batch_size": batch_size, "seed": seed}
    started = time.time()
    greedy = [g[0] for g in generate(model_dir, prompts, n=1, temperature=0.0, **kwargs)]
    sampled = generate(model_dir, prompts, n=samples, temperature=temperature, **kwargs) if samples else []
    seconds = time.time() - started
    trained_on = _training_questions(model_dir)
    rows = _graded_rows(problems, greedy, sampled, trained_on)

    def summary(subset: list[dict[str, Any]]) -> dict[str, Any]:
        return _summary(subset, samples, trained_on)

    return {
        "model": str(model_dir),
        "split": split,
        "count": count,
        "levels": list(levels),
        "samples": samples,
        "temperature": temperature,
        "max_new_tokens": max_new_tokens,
        "engine": engine,
        "seed": seed,
        "seconds": round(seconds, 1),
        "overall": summary(rows),
        "by_level": {str(lv): summary([r for r in rows if r["level"] == lv]) for lv in sorted(set(levels))},
        "by_task": {t: summary([r for r in rows if r["task"] == t]) for t in sorted({r["task"] for r in rows})},
        "examples": [
            {"question": problems[i].question, "answer": problems[i].answer, "greedy": greedy[i]}
            for i in range(min(5, len(problems)))
        ],
    }


def format_table(result: dict[str, Any]) -> str:
    """A markdown table of a ``measure_policy`` result."""
    k = result["samples"]
    seen = "seen_in_training" in result["overall"]
    head = "| level | n | greedy |" + (f" pass@{k} | mean sampled acc |" if k else "")
    head += " question seen in training | greedy on unseen |" if seen else ""
    lines = [head, "|---" * head.count(" | ") + "|---|"]
    for name, s in [*result["by_level"].items(), ("all", result["overall"])]:
        row = f"| {name} | {s['n']} | {s['greedy']:.1%} |"
        if k:
            row += f" {s[f'pass@{k}']:.1%} | {s['sample_acc']:.1%} |"
        if seen:
            unseen = "-" if s["greedy_unseen"] is None else f"{s['greedy_unseen']:.1%}"
            row += f" {s['seen_in_training']:.0%} | {unseen} |"
        lines.append(row)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ponder.training.measure", description=__doc__)
    parser.add_argument("model_dir")
    parser.add_argument("--split", default="test", choices=("train", "validation", "test"))
    parser.add_argument("--count", type=int, default=200, help="Problems, levels round-robin (default: %(default)s).")
    parser.add_argument("--levels", type=int, nargs="+", default=list(ALL_LEVELS), choices=ALL_LEVELS)
    parser.add_argument("--samples", type=int, default=16, help="Samples per problem for pass@k (0: greedy only).")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=256, help="Sequences per generate call (hf engine).")
    parser.add_argument("--engine", choices=("hf", "vllm"), default="hf")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="Write the result as JSON here.")
    args = parser.parse_args(argv)
    result = measure_policy(
        args.model_dir,
        split=args.split,
        count=args.count,
        levels=args.levels,
        samples=args.samples,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        engine=args.engine,
        seed=args.seed,
    )
    result["command"] = "python -m ponder.training.measure " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
