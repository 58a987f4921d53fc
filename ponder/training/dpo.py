"""``ponder train dpo | simpo | orpo``: offline preference optimisation of a policy with TRL's trainers."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ponder.training.common import TrainingInputError, load_table
from ponder.training.dpo_config import DPOArgs, ORPOArgs, SimPOArgs
from ponder.training.policy_common import lora_for, run_trl, trl_args

log = logging.getLogger("ponder.train.dpo")


def _turns(value: Any, role: str, where: str) -> list[dict[str, str]]:
    """A text or a list of turns as chat turns; the last one must have ``role``."""
    if isinstance(value, str):
        if not value.strip():
            raise TrainingInputError(f"{where} is empty")
        return [{"role": role, "content": value}]
    if (
        isinstance(value, list)
        and value
        and all(isinstance(t, dict) and isinstance(t.get("content"), str) and t.get("role") for t in value)
        and value[-1]["role"] == role
    ):
        return [{"role": t["role"], "content": t["content"]} for t in value]
    raise TrainingInputError(f"{where} must be a text or a list of {{role, content}} turns ending with a {role} turn")


def read_pairs(path: str) -> list[dict[str, list[dict[str, str]]]]:
    """Validated pairs of a file, in TRL's conversational form; refuses a pair whose two answers are the same."""
    rows = load_table(path, ("prompt", "chosen", "rejected"))
    pairs = []
    for i, row in enumerate(rows):
        where = f"{path}: row {i}"
        pair = {
            "prompt": _turns(row["prompt"], "user", f"{where}: `prompt`"),
            "chosen": _turns(row["chosen"], "assistant", f"{where}: `chosen`"),
            "rejected": _turns(row["rejected"], "assistant", f"{where}: `rejected`"),
        }
        if pair["chosen"] == pair["rejected"]:
            raise TrainingInputError(f"{where}: `chosen` and `rejected` are the same answer")
        pairs.append(pair)
    return pairs


def _train(cfg: Any, command: str, trainer_class: Any, config_class: Any, **loss: Any) -> Path:
    """One offline preference run: the pairs checked first, then TRL's trainer on the policy."""

    def build(out: Path, tokenizer: Any, model: Any, callbacks: list[Any]) -> tuple[Any, dict[str, Any]]:
        from datasets import Dataset

        pairs = read_pairs(cfg.dataset)
        trainer = trainer_class(
            model=model,
            args=trl_args(cfg, out, config_class, max_length=cfg.max_length, beta=cfg.beta, **loss),
            train_dataset=Dataset.from_list(pairs),
            processing_class=tokenizer,
            callbacks=callbacks,
            peft_config=lora_for(cfg),
        )
        return trainer, {"source": str(cfg.dataset), "pairs": len(pairs)}

    return run_trl(cfg, command, build, check=lambda: read_pairs(cfg.dataset))


def train_dpo(cfg: DPOArgs) -> Path:
    """DPO against the starting policy as the frozen reference."""
    from trl import DPOConfig, DPOTrainer

    return _train(cfg, "ponder train dpo", DPOTrainer, DPOConfig)


def train_simpo(cfg: SimPOArgs) -> Path:
    """SimPO: TRL's CPO trainer with the SimPO loss and no behaviour-cloning term."""
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    return _train(
        cfg, "ponder train simpo", CPOTrainer, CPOConfig, loss_type="simpo", cpo_alpha=0.0, simpo_gamma=cfg.simpo_gamma
    )


def train_orpo(cfg: ORPOArgs) -> Path:
    """ORPO: SFT on the chosen answers plus the odds-ratio preference term."""
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    return _train(cfg, "ponder train orpo", ORPOTrainer, ORPOConfig)
