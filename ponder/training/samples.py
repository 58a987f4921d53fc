"""Policy samples for verifier training: k graded completions per problem, and Monte Carlo step labels, via engines."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from ponder.core.types import Prompt, SamplingParams
from ponder.tasks import THINK_OPEN, Problem, generate_problems, grade_output, parse_output, step_labels

log = logging.getLogger("ponder.train.samples")

MAX_NEW_TOKENS = 160  # the policy's longest trace (level 5 chains) is well under this
ENGINE_KINDS = ("vllm", "hf")


def sample_record(problem: Problem, completion: str, finish_reason: str = "stop") -> dict[str, Any]:
    """One graded policy sample: the problem's columns plus messages, completion, steps, correctness, exact labels."""
    parsed = parse_output(completion)
    return {
        **problem.to_record(),
        "messages": problem.prompt_messages(),
        "completion": completion,
        "finish_reason": finish_reason,
        "steps": parsed.steps,
        "correct": grade_output(problem, completion),
        "labels": step_labels(problem, parsed.steps),
    }


def step_prefix(steps: Sequence[str], upto: int) -> str:
    """The partial assistant turn after the first ``upto`` steps: the think opener and one step per line."""
    return THINK_OPEN + "".join(step + "\n" for step in steps[:upto])


async def _gather(jobs: list[Callable[[], Awaitable[Any]]], concurrency: int, desc: str) -> list[Any]:
    """Run the jobs at most ``concurrency`` at a time (vLLM batches the concurrent ones), with a progress bar."""
    from tqdm import tqdm

    gate = asyncio.Semaphore(concurrency)
    bar = tqdm(total=len(jobs), desc=desc, unit="call")

    async def one(job: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            result = await job()
        bar.update()
        return result

    try:
        return await asyncio.gather(*(one(j) for j in jobs))
    finally:
        bar.close()


async def sample_problems(
    engine: Any,
    problems: Sequence[Problem],
    k: int,
    *,
    temperature: float = 1.0,
    max_tokens: int = MAX_NEW_TOKENS,
    concurrency: int = 64,
) -> list[dict[str, Any]]:
    """``k`` samples per problem, each one ``engine.generate(..., n=k)`` call; records in problem order."""
    params = SamplingParams(max_tokens=max_tokens, temperature=temperature)

    def job(problem: Problem) -> Callable[[], Awaitable[list[dict[str, Any]]]]:
        async def run() -> list[dict[str, Any]]:
            samples = await engine.generate(Prompt.chat(problem.prompt_messages()), params, n=k)
            return [sample_record(problem, s.text, s.finish_reason) for s in samples]

        return run

    groups = await _gather([job(p) for p in problems], concurrency, f"sampling k={k} T={temperature}")
    return [r for group in groups for r in group]


async def monte_carlo_labels(
    engine: Any,
    records: Sequence[dict[str, Any]],
    m: int,
    *,
    temperature: float = 1.0,
    max_tokens: int = MAX_NEW_TOKENS,
    concurrency: int = 64,
) -> list[list[float]]:
    """Math-Shepherd labels: per step, the fraction of ``m`` rollouts from just after it that end correct.

    A rollout continues the assistant turn ``<think>step_1\\n...step_i\\n`` (``Prompt.chat(messages, prefix=...)``,
    ``n=m`` in one call). Prefixes shared by several samples of a problem are rolled out once. Hard labels are
    ``fraction > 0``.
    """
    params = SamplingParams(max_tokens=max_tokens, temperature=temperature)
    keys: dict[tuple[str, int, str], tuple[Problem, str]] = {}
    for r in records:
        problem = Problem.from_record(r)
        for i in range(1, len(r["steps"]) + 1):
            prefix = step_prefix(r["steps"], i)
            keys.setdefault((problem.split, problem.seed, prefix), (problem, prefix))

    def job(problem: Problem, prefix: str) -> Callable[[], Awaitable[float]]:
        async def run() -> float:
            samples = await engine.generate(Prompt.chat(problem.prompt_messages(), prefix=prefix), params, n=m)
            return sum(grade_output(problem, prefix + s.text) for s in samples) / m

        return run

    order = list(keys)
    values = await _gather([job(*keys[key]) for key in order], concurrency, f"rollouts m={m}")
    fraction = dict(zip(order, values, strict=True))
    return [
        [fraction[(r["split"], r["seed"], step_prefix(r["steps"], i))] for i in range(1, len(r["steps"]) + 1)]
        for r in records
    ]


def engine_settings(policy: str | Path, kind: str, seed: int = 0, max_model_len: int = 512) -> Any:
    """Engine settings for sampling the bundled-size policy on this machine (float32, a short context)."""
    from ponder.engines.settings import EngineSettings

    if kind not in ENGINE_KINDS:
        raise ValueError(f"unknown engine {kind!r}; choose from {list(ENGINE_KINDS)}")
    return EngineSettings(kind=kind, model=str(policy), max_model_len=max_model_len, dtype="float32", seed=seed)


async def with_engine(policy: str | Path, kind: str, seed: int, work: Callable[[Any], Awaitable[Any]]) -> Any:
    """Build the engine, run ``work(engine)`` and close the engine again."""
    from ponder.engines.factory import build_engine

    engine = await build_engine(engine_settings(policy, kind, seed))
    try:
        return await work(engine)
    finally:
        await engine.aclose()


def weights_digest(folder: str | Path) -> str:
    """A short hash of the policy's weight files, so that a retrained policy never reuses stale samples."""
    import hashlib

    digest = hashlib.sha256()
    for file in sorted(Path(folder).glob("*.safetensors")) + sorted(Path(folder).glob("*.bin")):
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def write_jsonl(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """One JSON object per line (the folder is created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    with tmp.open("w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    tmp.replace(path)  # a crash half-way never leaves a truncated cache behind


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a JSONL file."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _read_cache(cache: str | Path, spec: dict[str, Any]) -> tuple[list[dict[str, Any]] | None, bool]:
    """The cached samples of the run ``spec`` describes (None when the file holds another run), and whether they
    are complete: samples cached without the requested Monte Carlo rollouts are reused, the rollouts still missing."""
    if not Path(cache).is_file():
        return None, False
    rows = read_jsonl(cache)
    header = dict(rows[0].get("header") or {}) if rows else {}
    cached_mc = header.pop("mc_rollouts", 0)
    header.pop("seconds", None)
    if header != {k: v for k, v in spec.items() if k != "mc_rollouts"} or len(rows) < 2:
        log.info("%s was made for a different request; regenerating it", cache)
        return None, False
    if spec["mc_rollouts"] in (0, cached_mc):
        log.info("reusing %d policy samples from %s", len(rows) - 1, cache)
        return rows[1:], True
    log.info("reusing %d policy samples from %s; adding m=%d rollouts", len(rows) - 1, cache, spec["mc_rollouts"])
    return rows[1:], False


def collect_samples(
    policy: str | Path,
    *,
    split: str,
    count: int,
    levels: Sequence[int],
    k: int,
    temperature: float,
    engine: str = "vllm",
    seed: int = 0,
    mc_rollouts: int = 0,
    cache: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Policy samples of ``count`` problems of ``split`` (read from ``cache`` when it holds a matching run).

    With ``mc_rollouts`` > 0 every record also gets ``mc``: the Monte Carlo fraction per step. The cache file
    holds a header line describing the run; a different request regenerates it.
    """
    spec = {
        "policy": str(policy),
        "policy_weights": weights_digest(policy),
        "split": split,
        "count": count,
        "levels": list(levels),
        "k": k,
        "temperature": temperature,
        "seed": seed,
        "mc_rollouts": mc_rollouts,
    }
    problems = generate_problems(split, count, levels)
    started = time.time()
    records, complete = _read_cache(cache, spec) if cache else (None, False)
    if complete:
        return records

    async def work(eng: Any) -> list[dict[str, Any]]:
        out = records if records is not None else await sample_problems(eng, problems, k, temperature=temperature)
        if mc_rollouts:
            for record, mc in zip(out, await monte_carlo_labels(eng, out, mc_rollouts), strict=True):
                record["mc"] = mc
        return out

    records = asyncio.run(with_engine(policy, engine, seed, work))
    log.info(
        "%d samples of %d %s problems in %.0f s (%s engine): %.1f%% correct",
        len(records),
        count,
        split,
        time.time() - started,
        engine,
        100 * sum(r["correct"] for r in records) / max(1, len(records)),
    )
    if cache:
        write_jsonl(cache, [{"header": {**spec, "seconds": round(time.time() - started, 1)}}, *records])
    return records
