"""``RouterArgs``: every option of ``ponder train router`` (the learned compute-optimal router from eval logs)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ponder.strategies.router import FEATURES
from ponder.training.config_args import arg, shared


@dataclass
class RouterArgs:
    """A learned router for ``reasoning_effort: auto`` (Snell et al. 2024): from ``ponder eval`` logs of a probe run
    and of the arms (strategy, verifier, budget) on the same problems, fit a predictor of how likely a problem is
    solved from features known at serve time (the probe's agreement, verifier scores and lengths; the question's
    numbers), cut its predictions into five difficulty levels, and give each level the arm with the best accuracy
    minus lambda * tokens. Writes the policy file `ponder serve --router` loads."""

    logs: list[str] = field(
        metadata=arg(
            "`ponder eval` output: JSONL files or folders of them. One run must be a compute_optimal probe whose "
            "every route is `probe` (its rows carry the probe's features); every other run is an arm. Rows are "
            "matched by split and seed.",
            metavar="PATH",
        )
    )
    output: str = field(metadata=arg("Router file (JSON) to write.", metavar="FILE"))
    probe_run: str | None = field(
        default=None, metadata=arg("The probe run's name (default: the one run whose rows carry probe features).")
    )
    runs: list[str] = field(
        default_factory=list, metadata=arg("Arms: only these runs (default: every run but the probe's).")
    )
    reference: str | None = field(
        default=None,
        metadata=arg(
            "The run the token target is a share of (default: the best_of_n run without stop_score with the most "
            "samples, else the run with the most tokens)."
        ),
    )
    objective: str = field(
        default="match_accuracy",
        metadata=arg(
            "How lambda is searched, on cross-validated figures: match_accuracy: the fewest tokens that reach the "
            "reference's accuracy (less --accuracy-margin); within_tokens: the best accuracy within --token-ratio of "
            "its tokens. Where none qualifies, the other one decides.",
            choices=("match_accuracy", "within_tokens"),
        ),
    )
    token_ratio: float = field(
        default=0.25, metadata=arg("within_tokens: the share of the reference's mean tokens to stay within.")
    )
    token_confidence: float = field(
        default=1.645,
        metadata=arg(
            "within_tokens: standard errors of the cross-validated tokens over the share (each problem's share of "
            "the reference's tokens) added before comparing, so that the share holds on new problems (1.645: "
            "one-sided 95%; 0: the point estimate)."
        ),
    )
    holdout_problems: int = field(
        default=200,
        metadata=arg(
            "within_tokens: the size of the set of new problems the share is promised on; its own sampling noise "
            "joins the standard error (0: the share holds on average over many new problems)."
        ),
    )
    accuracy_margin: float = field(
        default=0.0, metadata=arg("match_accuracy: accuracy (0-1) below the reference's that still counts as reached.")
    )
    lambda_tokens: float | None = field(
        default=None, metadata=arg("Accuracy given up per generated token; set, it replaces the --token-ratio search.")
    )
    features: list[str] = field(
        default_factory=lambda: list(FEATURES), metadata=arg("Features the predictor reads.", choices=tuple(FEATURES))
    )
    l2: float = field(default=1.0, metadata=arg("L2 penalty of the logistic regression (on standardised features)."))
    folds: int = field(default=5, metadata=arg("Cross-validation folds for the lambda search (2 or more)."))
    min_problems: int = field(default=50, metadata=arg("Refuse fewer problems than this with every run's row."))
    allow_test: bool = field(
        default=False,
        metadata=arg("Accept logs of the `test` split (they are for held-out measurement; train on validation)."),
    )
    seed: int = shared("seed", 0, "Seed of the cross-validation folds.")
    overwrite: bool = field(default=False, metadata=arg("Replace an existing router file."))
