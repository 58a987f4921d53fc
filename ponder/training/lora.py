"""LoRA and QLoRA for every trainer through PEFT: the shared flags, the adapter config, and the merge before saving."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ponder.training.common import TrainingInputError
from ponder.training.config_args import arg

ALL_LINEAR = "all-linear"  # PEFT's shorthand: every linear layer but the output head


@dataclass
class LoraArgs:
    """The LoRA flags: off (full fine-tuning) unless ``--lora-r`` is positive."""

    lora_r: int = field(
        default=0,
        metadata=arg(
            "LoRA rank: train low-rank adapters (PEFT) instead of every weight; 0 trains every weight. The adapters "
            "are merged into the weights when the model is saved, so the folder serves like any other."
        ),
    )
    lora_alpha: float = field(default=16.0, metadata=arg("LoRA scaling alpha (the update is scaled by alpha / r)."))
    lora_dropout: float = field(default=0.05, metadata=arg("Dropout on the LoRA adapters' input."))
    lora_target_modules: list[str] = field(
        default_factory=lambda: [ALL_LINEAR],
        metadata=arg(
            f"Modules that get adapters, by name (e.g. q_proj v_proj), or {ALL_LINEAR} for every linear layer but "
            "the output head."
        ),
    )
    qlora: bool = field(
        default=False,
        metadata=arg(
            "QLoRA: load the base model in 4-bit NF4 (bitsandbytes) and train LoRA adapters on it; needs --lora-r "
            "and a CUDA GPU."
        ),
    )


def check_lora(cfg: Any) -> None:
    """Refuse bad LoRA numbers, and QLoRA where it cannot run (no CUDA, no bitsandbytes), before anything loads."""
    if cfg.lora_r < 0:
        raise TrainingInputError("--lora-r must be 0 (no LoRA) or a positive rank")
    if cfg.lora_r and (cfg.lora_alpha <= 0 or not 0 <= cfg.lora_dropout < 1):
        raise TrainingInputError("--lora-alpha must be positive and --lora-dropout in [0, 1)")
    if cfg.lora_r and not cfg.lora_target_modules:
        raise TrainingInputError(f"--lora-target-modules needs at least one module name (or {ALL_LINEAR})")
    if not cfg.qlora:
        return
    if not cfg.lora_r:
        raise TrainingInputError("--qlora trains LoRA adapters on a 4-bit base: give it a rank with --lora-r")
    import torch

    if not torch.cuda.is_available():
        raise TrainingInputError(
            "--qlora needs a CUDA GPU (bitsandbytes' 4-bit kernels); this machine has none. "
            "Drop --qlora to train the same LoRA adapters on the full-precision model."
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise TrainingInputError("--qlora needs the bitsandbytes package: pip install bitsandbytes") from None


def peft_config(cfg: Any, task_type: str = "CAUSAL_LM", modules_to_save: list[str] | None = None) -> Any:
    """The ``LoraConfig`` of ``cfg``'s flags (``None`` without LoRA); ``modules_to_save`` are trained in full (a
    verifier's new head, e.g. ``["score"]``)."""
    if not cfg.lora_r:
        return None
    from peft import LoraConfig

    targets = list(cfg.lora_target_modules)
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=ALL_LINEAR if targets == [ALL_LINEAR] else targets,
        task_type=task_type,
        modules_to_save=modules_to_save,
    )


def load_kwargs(cfg: Any) -> dict[str, Any]:
    """``from_pretrained`` keywords: float32 on CPU, or the 4-bit NF4 quantisation of QLoRA."""
    if not getattr(cfg, "qlora", False):
        return {"dtype": "float32"}
    import torch
    from transformers import BitsAndBytesConfig

    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    return {"quantization_config": quant, "dtype": torch.bfloat16}


def device_args(cfg: Any) -> dict[str, Any]:
    """``TrainingArguments`` overrides of the CPU run: QLoRA trains on the GPU in bfloat16 (its 4-bit kernels are
    CUDA's); everything else stays a CPU run."""
    return {"use_cpu": False, "bf16": True} if getattr(cfg, "qlora", False) else {}


def apply_lora(model: Any, cfg: Any, task_type: str = "CAUSAL_LM", modules_to_save: list[str] | None = None) -> Any:
    """``model`` with trainable LoRA adapters (a ``PeftModel``), or ``model`` itself without LoRA; for training
    loops of our own (TRL's trainers take ``peft_config`` instead)."""
    config = peft_config(cfg, task_type, modules_to_save)
    if config is None:
        return model
    from peft import get_peft_model, prepare_model_for_kbit_training

    if getattr(cfg, "qlora", False):
        model = prepare_model_for_kbit_training(model)
    return get_peft_model(model, config)


def merged(model: Any) -> Any:
    """The plain model to save: LoRA adapters merged into its weights (a ``PeftModel`` unwrapped), else ``model``."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        return model.merge_and_unload()
    return model


def describe(cfg: Any) -> dict[str, Any]:
    """What ``training_config.json`` records about the adapters (empty without LoRA)."""
    if not cfg.lora_r:
        return {}
    return {
        "lora": {
            "r": cfg.lora_r,
            "alpha": cfg.lora_alpha,
            "dropout": cfg.lora_dropout,
            "target_modules": list(cfg.lora_target_modules),
            "qlora": cfg.qlora,
            "merged": True,
        }
    }


def head_modules(model: Any) -> list[str]:
    """A classifier's head modules (its top-level modules with weights outside the body: ``score``, ``classifier``),
    to train in full through ``modules_to_save``; none for a causal LM, whose output layer is not a new head."""
    body = getattr(model, "base_model_prefix", "model")
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return [
        name
        for name, module in model.named_children()
        if name != body and module is not output and any(True for _ in module.parameters())
    ]
