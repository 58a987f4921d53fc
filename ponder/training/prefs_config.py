"""``PrefsArgs``: every option of ``ponder train prefs`` (preference pairs from ranked policy samples)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ponder.tasks.levels import ALL_LEVELS, TASKS
from ponder.training.config_args import arg, shared
from ponder.training.policy_config import bundled


@dataclass
class PrefsArgs:
    """Preference pairs for DPO, SimPO, ORPO (and the ORM): sample the policy k times per prompt, rank the samples
    with a verifier (a learned ORM/PRM, a rule, reasoning-gym's scorer, or an LLM judge reading a written
    constitution: RLAIF), pair a better with a worse sample of similar length, and save the pairs as JSONL."""

    output: str = field(
        metadata=arg(
            "JSONL file the pairs go to: `prompt` (the chat turns), `chosen`, `rejected` (assistant texts) and their "
            "scores; a summary goes beside it (FILE.json).",
            metavar="FILE",
        )
    )
    policy: str = field(
        default_factory=lambda: bundled("policy"),
        metadata=arg("Policy whose samples are ranked.", metavar="DIR"),
    )
    dataset: str | None = field(
        default=None,
        metadata=arg(
            "Prompts file (JSONL, JSON or Parquet) with a `prompt` column (a string or chat turns) and optionally "
            "`answer` (for the scorer and math_rule). Default: generated arithmetic problems.",
            metavar="FILE",
        ),
    )
    problems: int = field(default=256, metadata=arg("Generated prompts: problems (train seed range)."))
    levels: list[int] = field(
        default_factory=lambda: list(ALL_LEVELS),
        metadata=arg("Generated prompts: difficulty levels, round-robin.", choices=ALL_LEVELS),
    )
    tasks: list[str] = field(
        default_factory=lambda: list(TASKS), metadata=arg("Generated prompts: reasoning-gym tasks.", choices=TASKS)
    )
    k: int = field(default=8, metadata=arg("Policy samples per prompt."))
    temperature: float = field(default=1.0, metadata=arg("Sampling temperature."))
    max_new_tokens: int = field(default=160, metadata=arg("Longest sample, in tokens."))
    engine: str = field(
        default="vllm",
        metadata=arg("Engine that samples the policy (vllm is much faster on CPU).", choices=("vllm", "hf")),
    )
    verifier: str = field(
        default="scorer",
        metadata=arg(
            "What ranks the samples: scorer (reasoning-gym's score), calculator, math_rule, orm, prm (the bundled "
            "models), a verifier model folder, or llm_judge (the judge model answers yes/no; with --constitution it "
            "judges against those principles: RLAIF)."
        ),
    )
    constitution: str | None = field(
        default=None,
        metadata=arg(
            "--verifier llm_judge: a text file of principles the judge reads before each answer.", metavar="FILE"
        ),
    )
    judge_model: str | None = field(
        default=None, metadata=arg("--verifier llm_judge: the judge model folder (default: --policy).", metavar="DIR")
    )
    max_length_ratio: float = field(
        default=1.5,
        metadata=arg(
            "Length-bias guard: pair two samples only when the longer is at most this many times the length of the "
            "shorter, so that length does not explain the preference (0: no guard)."
        ),
    )
    min_margin: float = field(
        default=0.0, metadata=arg("Pair two samples only when the chosen one outscores the other by more than this.")
    )
    pairs_per_prompt: int = field(default=2, metadata=arg("At most this many pairs per prompt (no sample used twice)."))
    seed: int = shared("seed", 0, "Seed of the sampling engine.")
    overwrite: bool = field(default=False, metadata=arg("Replace an existing output file."))
