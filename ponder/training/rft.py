"""``ponder train rft``: rejection-sampling fine-tuning (expert iteration) on answers found by Ponder's own search."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import shutil
import time
from pathlib import Path
from typing import Any

from ponder.core.sidecar import SIDECAR
from ponder.tasks import Problem, generate_problems
from ponder.training.chat_mix import BUNDLED_MIX, ChatMix, asked, mixed_chats
from ponder.training.common import TrainingInputError, training_run, write_json
from ponder.training.policy_common import (
    check_policy_args,
    check_positive,
    generated_prompts,
    user_prompts,
    write_config,
)
from ponder.training.rewards import RewardTerm, check_scorable, parse_rewards, problem_of
from ponder.training.rft_config import RFTArgs

log = logging.getLogger("ponder.train.rft")

# Replayed problems are drawn from here on in the train range, clear of the rounds' prompts (counted from 0).
REPLAY_OFFSET = 50_000_000


def _check(cfg: RFTArgs) -> None:
    check_policy_args(cfg)
    try:
        ChatMix(natural=cfg.natural_fraction).check()
    except ValueError as exc:
        raise TrainingInputError(str(exc)) from None
    if cfg.replay < 0:
        raise TrainingInputError(f"--replay must not be negative, got {cfg.replay}")
    check_positive(cfg, "problems", "rounds", "samples", "max_new_tokens", "search_temperature")
    if cfg.server and cfg.rounds != 1:
        raise TrainingInputError(
            "--server searches with the policy that server runs, which training does not change: use --rounds 1 "
            "with --server, or drop --server to search in process every round"
        )
    if not cfg.server:
        parse_rewards([cfg.verifier])  # a name the reward adapter knows, or a verifier folder
        if cfg.verifier == "scorer":
            raise TrainingInputError(
                "--verifier scorer: the search ranks answers without knowing the right one; rank with calculator, "
                "math_rule, orm, prm or a verifier folder, and keep the right ones with --accept scorer"
            )
        if cfg.strategy == "dvts" and not _scores_steps(cfg.verifier):
            raise TrainingInputError(f"--strategy dvts needs a step verifier (calculator, prm), not {cfg.verifier}")
    if cfg.dataset:
        if cfg.accept == "scorer":
            check_scorable([RewardTerm("scorer")], user_prompts(cfg.dataset), cfg.dataset)
        else:
            user_prompts(cfg.dataset)


def _scores_steps(verifier: str) -> bool:
    """Whether a verifier name or folder scores single steps (what DVTS needs)."""
    if verifier in ("calculator", "prm"):
        return True
    if verifier in ("math_rule", "orm"):
        return False
    from ponder.verifiers.registry import detect_kind

    try:
        return detect_kind(verifier).startswith("prm")
    except ValueError as exc:
        raise TrainingInputError(f"--verifier {verifier}: {exc}") from None


def round_prompts(cfg: RFTArgs, round_index: int) -> list[dict[str, Any]]:
    """The prompts of a round: the user's file every round, or new generated problems each round."""
    if cfg.dataset:
        return user_prompts(cfg.dataset)
    rows = generated_prompts("train", cfg.problems, cfg.levels, cfg.tasks, offset=round_index * cfg.problems)
    for row in rows:
        problem = asked(Problem.from_record(row), random.Random(f"rft:{row['seed']}"), cfg.natural_fraction)
        row["prompt"] = problem.prompt_messages()
    return rows


def replay_chats(cfg: RFTArgs, round_index: int, count: int) -> list[dict[str, Any]]:
    """``count`` gold-trace chats (plus the mix's extras) from train problems clear of the searched ones."""
    problems = generate_problems("train", count, cfg.levels, cfg.tasks, offset=REPLAY_OFFSET + round_index * count)
    return [{"messages": chat} for chat in mixed_chats(problems, "train", BUNDLED_MIX)]


# ------------------------------------------------------------------------------------------------ search


def _strategy_options(cfg: RFTArgs) -> dict[str, Any]:
    return {"n_samples": cfg.samples} if cfg.strategy == "best_of_n" else {}


async def _search_in_process(cfg: RFTArgs, policy: str, rows: list[dict[str, Any]]) -> list[tuple[str, float | None]]:
    """Each prompt answered by ``cfg.strategy`` over an in-process engine and a verifier, a few at a time."""
    from tqdm import tqdm

    from ponder.core.types import Budget, Prompt, SamplingParams
    from ponder.engines.factory import build_engine
    from ponder.strategies.base import StrategyRequest
    from ponder.strategies.registry import get
    from ponder.strategies.steps import StepFormat
    from ponder.training.rewards import build_rewards
    from ponder.training.samples import engine_settings

    engine = await build_engine(engine_settings(policy, cfg.engine, cfg.seed))
    [reward] = build_rewards(parse_rewards([cfg.verifier]))
    strategy = get(cfg.strategy).from_request(_strategy_options(cfg))
    params = SamplingParams(max_tokens=cfg.max_new_tokens, temperature=cfg.search_temperature)
    budget, gate = Budget(max_samples=cfg.samples), asyncio.Semaphore(8)
    bar = tqdm(total=len(rows), desc=f"{cfg.strategy} N={cfg.samples} ({cfg.verifier})", unit="prompt")

    async def one(row: dict[str, Any]) -> tuple[str, float | None]:
        request = StrategyRequest(Prompt.chat(row["prompt"]), params, n=1, format=StepFormat())
        async with gate:
            result = await strategy.run(request, engine, reward.verifier, budget)
        bar.update()
        best = result.choices[0]
        return best.text, best.score

    try:
        return list(await asyncio.gather(*(one(r) for r in rows)))
    finally:
        bar.close()
        await reward.aclose()
        await engine.aclose()


def _search_server(cfg: RFTArgs, rows: list[dict[str, Any]]) -> list[tuple[str, float | None]]:
    """Each prompt answered through a running server's API: the search, its verifier and budget as extensions."""
    from openai import OpenAI
    from tqdm import tqdm

    client = OpenAI(base_url=cfg.server, api_key="unused")
    model = client.models.list().data[0].id
    out = []
    for row in tqdm(rows, desc=f"{cfg.strategy} via {cfg.server}", unit="prompt"):
        resp = client.chat.completions.create(
            model=model,
            messages=row["prompt"],
            max_tokens=cfg.max_new_tokens,
            temperature=cfg.search_temperature,
            extra_body={
                "strategy": cfg.strategy,
                "strategy_options": _strategy_options(cfg),
                "verifier": cfg.verifier,
                "budget": {"max_samples": cfg.samples},
            },
        )
        message = resp.choices[0].message
        reasoning = (message.model_extra or {}).get("reasoning_content")
        text = f"<think>{reasoning}</think>{message.content or ''}" if reasoning is not None else message.content or ""
        scores = (resp.model_extra or {}).get("ponder", {}).get("scores") or [None]
        out.append((text, scores[0]))
    return out


def accepted(cfg: RFTArgs, row: dict[str, Any], text: str, score: float | None) -> bool:
    """Whether an answer is kept: graded correct (``--accept scorer``) or scored high enough (``verifier``)."""
    if cfg.accept == "verifier":
        return score is not None and score >= cfg.threshold
    from ponder.tasks import grade, parse_output

    problem = problem_of(row)
    if problem is not None:
        return grade(problem, parse_output(text).answer) >= 1.0
    from ponder.verifiers.math_rule import MathRule

    return asyncio.run(MathRule().score(row["prompt"], [text], str(row["answer"])))[0] >= 1.0


# ------------------------------------------------------------------------------------------------ rounds


def _sft_args(cfg: RFTArgs, out: Path, data: Path, init: str) -> Any:
    """The SFT run of a round: the kept chats, from the last round's model, with this run's optimiser and LoRA."""
    from ponder.training.sft_config import SFTArgs

    shared = {f.name for f in dataclasses.fields(SFTArgs)} & {f.name for f in dataclasses.fields(RFTArgs)}
    values = {name: getattr(cfg, name) for name in shared}
    values.update(output_dir=str(out), dataset=str(data), init_model=init, eval_size=0, overwrite=True)
    return SFTArgs(**values)


def _round(cfg: RFTArgs, out: Path, index: int, policy: str) -> tuple[str, dict[str, Any]]:
    """Search, keep the accepted answers, SFT on them; the new model folder and the round's figures."""
    from ponder.training.sft import SFTTask, train_sft

    started = time.time()
    rows = round_prompts(cfg, index)
    found = _search_server(cfg, rows) if cfg.server else asyncio.run(_search_in_process(cfg, policy, rows))
    kept = [
        {"messages": [*row["prompt"], {"role": "assistant", "content": text}]}
        for row, (text, score) in zip(rows, found, strict=True)
        if accepted(cfg, row, text, score)
    ]
    figures = {
        "round": index + 1,
        "prompts": len(rows),
        "kept": len(kept),
        "kept_rate": round(len(kept) / len(rows), 4),
    }
    log.info("round %d: %d of %d answers kept (%.1f%%)", index + 1, len(kept), len(rows), 100 * figures["kept_rate"])
    if kept and cfg.replay:
        kept += replay_chats(cfg, index, round(cfg.replay * len(kept)))
        figures["replayed"] = len(kept) - figures["kept"]
        log.info("round %d: %d gold-trace chats replayed beside them", index + 1, figures["replayed"])
    if not kept:
        raise TrainingInputError(
            f"round {index + 1}: the search found no answer that --accept {cfg.accept} keeps; raise --samples or "
            "--problems, or use an easier --levels"
        )
    folder = out / "rounds" / str(index + 1)
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "kept.jsonl"
    data.write_text("".join(json.dumps(k) + "\n" for k in kept))
    sidecar = json.loads((Path(policy) / SIDECAR).read_text()) if (Path(policy) / SIDECAR).is_file() else None
    task = SFTTask(sidecar=sidecar, command="ponder train rft")
    model = train_sft(_sft_args(cfg, folder / "model", data, policy), task)
    steps = json.loads((model / "training_config.json").read_text())["steps"]
    return str(model), {**figures, "sft_steps": steps, "seconds": round(time.time() - started, 1)}


def train_rft(cfg: RFTArgs) -> Path:
    """``--rounds`` of search, filter and SFT; the last round's model becomes the output folder."""
    _check(cfg)
    with training_run(cfg.output_dir, overwrite=cfg.overwrite) as (out, _handler):
        started = time.time()
        policy, rounds = str(cfg.policy), []
        for index in range(cfg.rounds):
            policy, figures = _round(cfg, out, index, policy)
            rounds.append(figures)
            write_json(out / "rounds" / "rounds.json", rounds)
        for item in Path(policy).iterdir():  # the last model is the folder `ponder serve` serves; its logs stay put
            if item.is_file():
                shutil.copy(item, out / item.name)
        steps = sum(r["sft_steps"] for r in rounds)
        search = {"strategy": cfg.strategy, "samples": cfg.samples, "verifier": cfg.verifier, "server": cfg.server}
        write_config(cfg, out, "ponder train rft", started, search=search, rounds=rounds, steps=steps)
        log.info("saved %s (%d rounds, %.1f min)", out, cfg.rounds, (time.time() - started) / 60)
        return out
