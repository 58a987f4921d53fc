"""``ponder train prefs``: preference pairs from policy samples ranked by a verifier, guarded against length bias."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ponder.core.types import Prompt, SamplingParams
from ponder.training.common import TrainingInputError, check_model_dir, write_json
from ponder.training.policy_common import check_positive, generated_prompts, user_prompts
from ponder.training.prefs_config import PrefsArgs
from ponder.training.rewards import TERMS, Reward, RewardTerm, build_rewards, check_scorable, parse_rewards

log = logging.getLogger("ponder.train.prefs")

JUDGE_TEMPLATE = (
    "Judge the answer by these principles:\n{constitution}\n\n"
    "Problem:\n{{problem}}\n\nProposed answer:\n{{answer}}\n\n"
    "Does the answer follow every principle above? Reply with yes or no."
)


def check_args(cfg: PrefsArgs) -> None:
    """Refuse bad flags and inputs before any model loads."""
    check_positive(cfg, "problems", "k", "max_new_tokens", "pairs_per_prompt")
    if cfg.k < 2:
        raise TrainingInputError("--k must be at least 2: a pair needs two samples of a prompt")
    if cfg.temperature <= 0:
        raise TrainingInputError("--temperature must be positive: greedy samples of a prompt are all the same")
    if cfg.max_length_ratio != 0 and cfg.max_length_ratio < 1:
        raise TrainingInputError("--max-length-ratio must be at least 1 (or 0 to turn the guard off)")
    if Path(cfg.output).exists() and not cfg.overwrite:
        raise TrainingInputError(f"{cfg.output} exists; pass --overwrite to replace it")
    check_model_dir(cfg.policy)
    if cfg.verifier == "llm_judge":
        if cfg.constitution and not Path(cfg.constitution).is_file():
            raise TrainingInputError(f"constitution file {cfg.constitution} does not exist")
        if cfg.judge_model:
            check_model_dir(cfg.judge_model)
    elif cfg.constitution or cfg.judge_model:
        raise TrainingInputError("--constitution and --judge-model go with --verifier llm_judge")
    elif cfg.dataset:
        check_scorable(parse_rewards([cfg.verifier]), user_prompts(cfg.dataset), cfg.dataset)
    else:
        parse_rewards([cfg.verifier])
    if cfg.dataset:
        user_prompts(cfg.dataset)


def length_ok(a: str, b: str, max_ratio: float) -> bool:
    """Whether two texts are close enough in length to be paired (``max_ratio`` 0: always)."""
    if not max_ratio:
        return True
    short, long = sorted((max(len(a), 1), max(len(b), 1)))
    return long <= max_ratio * short


def pick_pairs(
    texts: Sequence[str], scores: Sequence[float], *, max_ratio: float, min_margin: float, limit: int
) -> list[tuple[int, int]]:
    """(chosen, rejected) indices: the widest score margins first among pairs of similar length, no sample twice.

    Duplicated texts count once. A pair whose lengths differ more than ``max_ratio`` is never formed, so that a
    verifier's taste for long (or short) answers cannot become the preference the policy learns.
    """
    first: dict[str, int] = {}
    for i, text in enumerate(texts):
        first.setdefault(text, i)
    distinct = sorted(first.values())
    candidates = [
        (scores[i] - scores[j], i, j)
        for i in distinct
        for j in distinct
        if scores[i] - scores[j] > min_margin and length_ok(texts[i], texts[j], max_ratio)
    ]
    candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
    used: set[int] = set()
    pairs: list[tuple[int, int]] = []
    for _, i, j in candidates:
        if len(pairs) == limit:
            break
        if i not in used and j not in used:
            pairs.append((i, j))
            used.update((i, j))
    return pairs


async def sample_prompts(engine: Any, rows: Sequence[dict[str, Any]], cfg: PrefsArgs) -> list[list[str]]:
    """``k`` samples of every prompt (one ``n=k`` engine call each, a few at a time), with a progress bar."""
    from tqdm import tqdm

    params = SamplingParams(max_tokens=cfg.max_new_tokens, temperature=cfg.temperature)
    gate = asyncio.Semaphore(32)
    bar = tqdm(total=len(rows), desc=f"sampling k={cfg.k}", unit="prompt")

    async def one(row: dict[str, Any]) -> list[str]:
        async with gate:
            samples = await engine.generate(Prompt.chat(row["prompt"]), params, n=cfg.k)
        bar.update()
        return [s.text for s in samples]

    try:
        return list(await asyncio.gather(*(one(r) for r in rows)))
    finally:
        bar.close()


def judge(engine: Any, cfg: PrefsArgs) -> Reward:
    """The LLM judge as a reward term: P("yes") that an answer follows the constitution (or is correct)."""
    from ponder.verifiers.llm_judge import DEFAULT_TEMPLATE, LLMJudge

    template = DEFAULT_TEMPLATE
    if cfg.constitution:
        principles = Path(cfg.constitution).read_text().strip().replace("{", "{{").replace("}", "}}")
        template = JUDGE_TEMPLATE.format(constitution=principles)
    return Reward(RewardTerm("llm_judge"), LLMJudge(engine, template))


async def _rank(rows: list[dict[str, Any]], samples: list[list[str]], ranker: Reward) -> list[list[float]]:
    """The verifier's score of every sample; prompts scored concurrently, so a model verifier batches them."""
    from tqdm import tqdm

    gate = asyncio.Semaphore(32)
    bar = tqdm(total=len(rows), desc=f"ranking ({ranker.__name__})", unit="prompt")

    async def one(row: dict[str, Any], texts: list[str]) -> list[float]:
        columns = {k: [v] * len(texts) for k, v in row.items() if k != "prompt"}
        async with gate:
            scores = await ranker(prompts=[row["prompt"]] * len(texts), completions=texts, **columns)
        bar.update()
        return scores

    try:
        return list(await asyncio.gather(*(one(r, t) for r, t in zip(rows, samples, strict=True))))
    finally:
        bar.close()


async def _sample_and_rank(cfg: PrefsArgs, rows: list[dict[str, Any]]) -> tuple[list[list[str]], list[list[float]]]:
    from ponder.engines.factory import build_engine
    from ponder.training.samples import engine_settings

    engine = await build_engine(engine_settings(cfg.policy, cfg.engine, cfg.seed))
    judge_engine = None
    try:
        samples = await sample_prompts(engine, rows, cfg)
        if cfg.verifier == "llm_judge":
            if cfg.judge_model and Path(cfg.judge_model).resolve() != Path(cfg.policy).resolve():
                judge_engine = await build_engine(engine_settings(cfg.judge_model, cfg.engine, cfg.seed))
            ranker = judge(judge_engine or engine, cfg)
        else:
            [ranker] = build_rewards(parse_rewards([cfg.verifier]))
        try:
            return samples, await _rank(rows, samples, ranker)
        finally:
            await ranker.aclose()
    finally:
        for e in (engine, judge_engine):
            if e is not None:
                await e.aclose()


def _pairs(cfg: PrefsArgs, rows: list[dict], samples: list[list[str]], scores: list[list[float]]) -> list[dict]:
    out = []
    for row, texts, values in zip(rows, samples, scores, strict=True):
        picked = pick_pairs(
            texts,
            values,
            max_ratio=cfg.max_length_ratio,
            min_margin=cfg.min_margin,
            limit=cfg.pairs_per_prompt,
        )
        for i, j in picked:
            extra = {k: row[k] for k in ("answer", "split", "seed", "level", "task") if k in row}
            out.append(
                {
                    "prompt": row["prompt"],
                    "chosen": texts[i],
                    "rejected": texts[j],
                    "score_chosen": values[i],
                    "score_rejected": values[j],
                    **extra,
                }
            )
    return out


def length_stats(pairs: Sequence[dict[str, Any]]) -> dict[str, float]:
    """How lengths split across the pairs: mean chosen and rejected length, and how often the chosen is longer."""
    n = max(1, len(pairs))
    return {
        "mean_chars_chosen": round(sum(len(p["chosen"]) for p in pairs) / n, 1),
        "mean_chars_rejected": round(sum(len(p["rejected"]) for p in pairs) / n, 1),
        "chosen_longer": round(sum(len(p["chosen"]) > len(p["rejected"]) for p in pairs) / n, 3),
    }


def train_prefs(cfg: PrefsArgs) -> Path:
    """Sample, rank, pair; write the pairs (JSONL) and a summary beside them; return the pairs file."""
    check_args(cfg)
    started = time.time()
    rows = user_prompts(cfg.dataset) if cfg.dataset else generated_prompts("train", cfg.problems, cfg.levels, cfg.tasks)
    samples, scores = asyncio.run(_sample_and_rank(cfg, rows))
    pairs = _pairs(cfg, rows, samples, scores)
    if not pairs:
        raise TrainingInputError(
            f"no pairs: the {cfg.verifier} scores of every prompt's samples were within --min-margin of each other "
            "(or too different in length); sample more (--k, --problems) or relax --max-length-ratio"
        )
    out = Path(cfg.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    summary = {
        "command": "ponder train prefs",
        "args": dict(vars(cfg)),
        "ranked_by": cfg.verifier + (" reading the constitution" if cfg.constitution else ""),
        "ranked_by_means": TERMS.get(cfg.verifier, "LLM judge" if cfg.verifier == "llm_judge" else "a verifier folder"),
        "prompts": len(rows),
        "samples": sum(len(s) for s in samples),
        "pairs": len(pairs),
        "lengths": length_stats(pairs),
        "seconds": round(time.time() - started, 1),
    }
    write_json(out.with_suffix(out.suffix + ".json"), summary)
    log.info("%d pairs from %d prompts -> %s (%s)", len(pairs), len(rows), out, summary["lengths"])
    return out
