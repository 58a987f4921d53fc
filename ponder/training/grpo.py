"""``ponder train grpo | cispo``: online RL of the policy with TRL's GRPOTrainer, rewards from Ponder's verifiers."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from ponder.training.common import TrainingInputError
from ponder.training.grpo_config import CISPOArgs, GroupArgs, GRPOArgs
from ponder.training.policy_common import check_positive, generated_prompts, lora_for, run_trl, trl_args, user_prompts
from ponder.training.rewards import build_rewards, check_scorable, close_rewards, parse_rewards

log = logging.getLogger("ponder.train.grpo")


def check_rl_inputs(cfg: Any) -> None:
    """Refuse bad rollout flags, reward terms and prompt files before anything loads."""
    check_positive(cfg, "train_size", "max_completion_length", "temperature")
    terms = parse_rewards(cfg.reward)
    if cfg.dataset:
        check_scorable(terms, user_prompts(cfg.dataset), cfg.dataset)


def prompt_rows(cfg: Any) -> list[dict[str, Any]]:
    """The prompts to roll out: the user's file, or generated arithmetic problems with their columns."""
    if cfg.dataset:
        return user_prompts(cfg.dataset)
    return generated_prompts("train", cfg.train_size, cfg.levels, cfg.tasks)


def _check(cfg: GroupArgs) -> None:
    check_rl_inputs(cfg)
    check_positive(cfg, "num_iterations", "epsilon", "epsilon_high")
    if cfg.num_generations < 2:
        raise TrainingInputError("--num-generations must be at least 2: advantages are relative to the group")
    if (cfg.batch_size * cfg.grad_accum) % cfg.num_generations:
        raise TrainingInputError(
            f"--batch-size x --grad-accum ({cfg.batch_size * cfg.grad_accum}) must be a multiple of --num-generations "
            f"({cfg.num_generations}): every group of samples of a prompt goes into one batch"
        )
    if cfg.beta < 0:
        raise TrainingInputError("--beta must not be negative")
    if cfg.use_vllm:
        import torch

        if not torch.cuda.is_available():
            raise TrainingInputError("--use-vllm generates on the GPU next to training; this machine has no CUDA")


def _train(cfg: GroupArgs, command: str, loss_type: str) -> Path:
    def build(out: Path, tokenizer: Any, model: Any, callbacks: list[Any]) -> tuple[Any, dict[str, Any]]:
        from datasets import Dataset
        from trl import GRPOConfig, GRPOTrainer

        terms = parse_rewards(cfg.reward)
        rewards = build_rewards(terms)
        rows = prompt_rows(cfg)
        args = trl_args(
            cfg,
            out,
            GRPOConfig,
            loss_type=loss_type,
            num_generations=cfg.num_generations,
            max_completion_length=cfg.max_completion_length,
            temperature=cfg.temperature,
            beta=cfg.beta,
            epsilon=cfg.epsilon,
            epsilon_high=cfg.epsilon_high,  # always explicit: TRL falls back to epsilon, a trap for CISPO
            num_iterations=cfg.num_iterations,
            reward_weights=[t.weight for t in terms],
            use_vllm=cfg.use_vllm,
            **({"vllm_mode": "colocate"} if cfg.use_vllm else {}),
        )
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=rewards,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            callbacks=[*callbacks, _closing(rewards)],
            peft_config=lora_for(cfg),
        )
        data = {"source": str(cfg.dataset or "reasoning-gym (generated)"), "prompts": len(rows)}
        return trainer, {**data, "rewards": {t.name: t.weight for t in terms}, "loss_type": loss_type}

    return run_trl(cfg, command, build, check=lambda: _check(cfg))


def _closing(rewards: list[Any]) -> Any:
    """A ``TrainerCallback`` that stops the reward verifiers' worker threads when training ends."""
    from transformers import TrainerCallback

    class CloseRewards(TrainerCallback):
        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            asyncio.run(close_rewards(rewards))

    return CloseRewards()


def train_grpo(cfg: GRPOArgs) -> Path:
    """GRPO with the chosen token-loss averaging (``--loss-type``)."""
    return _train(cfg, "ponder train grpo", cfg.loss_type)


def train_cispo(cfg: CISPOArgs) -> Path:
    """CISPO: GRPO's sampling and group advantages, with clipped, stop-gradient importance weights."""
    return _train(cfg, "ponder train cispo", "cispo")
