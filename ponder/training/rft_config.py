"""``RFTArgs``: every option of ``ponder train rft`` (rejection-sampling fine-tuning, i.e. expert iteration)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ponder.training.config_args import arg, shared
from ponder.training.policy_config import GeneratedPrompts, PolicyArgs

SEARCHES = ("best_of_n", "dvts")


@dataclass
class RFTInputs(GeneratedPrompts):
    """How each round searches for answers and which ones it keeps."""

    dataset: str | None = field(
        default=None,
        metadata=arg(
            "Prompts file (JSONL, JSON or Parquet): `prompt` (a string or chat turns) and `answer` (for --accept "
            "scorer). Default: generated arithmetic problems, new ones each round.",
            metavar="FILE",
        ),
    )
    problems: int = field(default=512, metadata=arg("Prompts searched per round (generated: train seed range)."))
    natural_fraction: float = field(
        default=0.0,
        metadata=arg(
            "Generated prompts: fraction asked as people ask ('What is 12+7?') instead of reasoning-gym's wording, "
            "with the training phrasings of ponder/tasks/phrasings.py."
        ),
    )
    replay: float = field(
        default=0.0,
        metadata=arg(
            "Gold-trace chats added to each round's SFT data, as a multiple of the answers kept, drawn with the "
            "bundled policy's training mix (phrasings, system prompts, mixed-digit sums, refusals): keeps what "
            "the search does not exercise from being forgotten. 0: none."
        ),
    )
    rounds: int = field(default=2, metadata=arg("Rounds of search, filter, SFT; each searches with the last model."))
    strategy: str = field(
        default="best_of_n",
        metadata=arg("Ponder's search that answers each prompt (dvts needs a step verifier).", choices=SEARCHES),
    )
    samples: int = field(default=8, metadata=arg("The search's budget.max_samples (N of best-of-N, DVTS's paths)."))
    search_temperature: float = field(default=0.8, metadata=arg("Sampling temperature of the search."))
    max_new_tokens: int = field(default=160, metadata=arg("Longest answer, in tokens."))
    verifier: str = field(
        default="calculator",
        metadata=arg(
            "Verifier the search ranks with: calculator, math_rule, orm, prm (the bundled models) or a verifier "
            "folder; with --server, a verifier name the server has loaded."
        ),
    )
    accept: str = field(
        default="scorer",
        metadata=arg(
            "Which answers are kept: scorer (reasoning-gym, or math-verify against `answer`, says correct) or "
            "verifier (the search's score of the answer is at least --threshold).",
            choices=("scorer", "verifier"),
        ),
    )
    threshold: float = field(default=0.5, metadata=arg("--accept verifier: the lowest score kept."))
    engine: str = field(
        default="vllm",
        metadata=arg("In-process engine the search samples with (vllm is much faster on CPU).", choices=("vllm", "hf")),
    )
    server: str | None = field(
        default=None,
        metadata=arg(
            "Search through a running Ponder server's API instead (its /v1 URL, e.g. http://127.0.0.1:8000/v1) that "
            "serves --policy; one round only, since a server's policy does not change.",
            metavar="URL",
        ),
    )


@dataclass
class RFTArgs(PolicyArgs, RFTInputs):
    """Rejection-sampling fine-tuning (expert iteration): answer prompts with Ponder's own search (best_of_n or dvts
    with a verifier), keep the answers the scorer or the verifier accepts, fine-tune on them (SFT, loss on the
    answer), and repeat from the new policy for --rounds."""

    max_length: int = field(default=256, metadata=arg("SFT: truncate each kept chat to this many tokens."))
    epochs: float = shared("epochs", 2.0)
    learning_rate: float = shared("learning_rate", 1e-4)
    logging_steps: int = shared("logging_steps", 10)
