"""``ponder train genprm``: a generative PRM, trained as SFT on gold traces in the verifier's view of the numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ponder.training.common import arithmetic_sidecar
from ponder.training.config_args import to_cli_flags
from ponder.training.genprm_config import GenPRMArgs
from ponder.training.sft import SFTTask, train_sft
from ponder.verifiers.formats import number_view


def genprm_sidecar(cfg: GenPRMArgs) -> dict[str, Any]:
    """The ``ponder.json`` that makes the server load the folder as a generative step verifier."""
    return {"kind": "prm", "format": "generative", "number_order": cfg.number_order, **arithmetic_sidecar()}


def train_genprm(cfg: GenPRMArgs) -> Path:
    """Train the causal LM on the chats seen through ``number_order``; save it with its verifier sidecar."""
    task = SFTTask(
        view=number_view(cfg.number_order),
        sidecar=genprm_sidecar(cfg),
        command="ponder train genprm " + " ".join(to_cli_flags(cfg)),
    )
    return train_sft(cfg, task)
