"""``GenPRMArgs``: every option of ``ponder train genprm``, one field each, whose help text is the CLI flag's help."""

from __future__ import annotations

from dataclasses import dataclass, field

from ponder.training.config_args import arg
from ponder.training.sft_config import SFTArgs
from ponder.verifiers.formats import NUMBER_ORDERS


@dataclass
class GenPRMArgs(SFTArgs):
    """Train a generative process reward model: a causal LM that learns to write the gold steps, in its own view of
    the numbers, and is served as a PRM that scores each step by the probability it gives the step as written.

    Same flags as ``ponder train sft`` (generated arithmetic traces by default, or ``--dataset`` chats), plus how the
    model sees numbers. The folder's ``ponder.json`` says ``kind: prm, format: generative`` and the number order,
    so ``ponder serve --verifier prm=FOLDER`` loads it as a step verifier.
    """

    number_order: str = field(
        default="reversed",
        metadata=arg(
            "How the verifier sees every number, in training and serving alike: reversed (least significant digit "
            "first, so each result digit depends on digits already read: a small model computes carries) or "
            "as_written.",
            choices=NUMBER_ORDERS,
        ),
    )
