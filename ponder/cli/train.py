"""``ponder train``: one subcommand per trainer (``sft``, ``rm``, ``prm``, ``genprm``, the policy optimisers, the
router); its flags are its config.

As TRL's CLI does, ``ponder`` registers ``train`` alone and builds the trainers' parsers (transformers'
``HfArgumentParser``) only when ``train`` runs, so that the other subcommands start without importing transformers.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

# name: (config dataclass, the trainer that takes it, the subcommand's one-line help)
TRAINERS: dict[str, tuple[str, str, str]] = {
    "sft": (
        "ponder.training.sft_config:SFTArgs",
        "ponder.training.sft:train_sft",
        "Supervised fine-tuning of a policy (default: the bundled arithmetic thinker, from scratch).",
    ),
    "rm": (
        "ponder.training.rm_config:RMArgs",
        "ponder.training.rm:train_rm",
        "Outcome reward model (--loss bt: Bradley-Terry via TRL; pl: Plackett-Luce) on policy samples.",
    ),
    "prm": (
        "ponder.training.prm_config:PRMArgs",
        "ponder.training.prm:train_prm",
        "Process reward model (--labels exact | mc-hard | mc-soft) on policy samples.",
    ),
    "genprm": (
        "ponder.training.genprm_config:GenPRMArgs",
        "ponder.training.genprm:train_genprm",
        "Generative PRM: a causal LM on gold traces that scores a step by the likelihood of the step as written.",
    ),
    "prefs": (
        "ponder.training.prefs_config:PrefsArgs",
        "ponder.training.prefs:train_prefs",
        "Preference pairs: policy samples ranked by a verifier or an LLM judge (RLAIF), length-matched, as JSONL.",
    ),
    "dpo": (
        "ponder.training.dpo_config:DPOArgs",
        "ponder.training.dpo:train_dpo",
        "Direct Preference Optimization of the policy on preference pairs (TRL DPOTrainer).",
    ),
    "simpo": (
        "ponder.training.dpo_config:SimPOArgs",
        "ponder.training.dpo:train_simpo",
        "SimPO, reference-free, on preference pairs (TRL CPOTrainer, loss_type=simpo, cpo_alpha=0).",
    ),
    "orpo": (
        "ponder.training.dpo_config:ORPOArgs",
        "ponder.training.dpo:train_orpo",
        "ORPO: SFT plus an odds-ratio preference term, on preference pairs (TRL ORPOTrainer).",
    ),
    "grpo": (
        "ponder.training.grpo_config:GRPOArgs",
        "ponder.training.grpo:train_grpo",
        "GRPO: online RL on rewards from Ponder's verifiers (--reward scorer=1.0 calculator=0.5; TRL GRPOTrainer).",
    ),
    "cispo": (
        "ponder.training.grpo_config:CISPOArgs",
        "ponder.training.grpo:train_cispo",
        "CISPO: GRPO with clipped, stop-gradient importance weights (TRL GRPOTrainer, loss_type=cispo).",
    ),
    "ppo": (
        "ponder.training.ppo_config:PPOArgs",
        "ponder.training.ppo:train_ppo",
        "PPO: value head, GAE(lambda), KL penalty to the reference policy, on rewards from Ponder's verifiers.",
    ),
    "rft": (
        "ponder.training.rft_config:RFTArgs",
        "ponder.training.rft:train_rft",
        "Rejection-sampling fine-tuning (expert iteration): Ponder's search, keep accepted answers, SFT, repeat.",
    ),
    "router": (
        "ponder.training.router_config:RouterArgs",
        "ponder.training.router:train_router",
        "The learned compute-optimal router (reasoning_effort auto) from ponder eval logs: ponder serve --router.",
    ),
}
CHOICES = "{" + ",".join(TRAINERS) + "}"


def _load(path: str) -> Any:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def _handler(name: str, parser: Any, train: str) -> Any:
    """The handler of ``ponder train NAME``: the config from the parsed flags, train, print the output folder."""

    def run(args: argparse.Namespace) -> int:
        from ponder.training.common import TrainingInputError

        (cfg,) = parser.parse_dict(vars(args), allow_extra_keys=True)  # the other keys are the CLI's own
        try:
            out = _load(train)(cfg)
        except TrainingInputError as exc:
            print(f"ponder train {name}: error: {exc}", file=sys.stderr)
            return 2
        print(out)
        return 0

    return run


def build_parser(prog: str = "ponder train") -> argparse.ArgumentParser:
    """The parser of ``ponder train``: one ``ConfigParser`` of the trainer's config per subcommand."""
    from ponder.training.config_parser import ConfigParser

    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    trainers = parser.add_subparsers(dest="trainer", required=True, metavar=CHOICES, parser_class=ConfigParser)
    for name, (config, train, help) in TRAINERS.items():
        cls = _load(config)
        sub = trainers.add_parser(name, help=help, description=cls.__doc__, dataclass_types=cls)
        sub.set_defaults(func=_handler(name, sub, train))
    return parser


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``ponder train`` on the top-level ``ponder`` subparsers; what follows ``train`` goes to ``main``."""
    trainers = "\n".join(f"  {name:<6} {help}" for name, (_, _, help) in TRAINERS.items())
    p = sub.add_parser(
        "train",
        help="Train the policies and verifiers Ponder serves.",
        description=f"{__doc__}\ntrainers (`ponder train TRAINER --help` lists its flags):\n{trainers}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar=f"{CHOICES} ...", help="a trainer and its flags")
    p.set_defaults(func=lambda args: main(args.argv))


def main(argv: list[str] | None = None) -> int:
    """``python -m ponder.cli.train sft ...``: the same as ``ponder train sft ...``."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
