"""``ponder train router``: the learned compute-optimal router (Snell et al. 2024) from eval logs, as a policy file.

A logistic regression predicts from online features how likely a problem is solved (its target: the share of the
arms that solved it); its predictions, cut at their quintiles, are five difficulty levels; each level gets the arm
with the best mean accuracy minus lambda * mean tokens. Lambda is searched by cross-validation for the best accuracy
within a share of a reference run's tokens (with a margin of standard errors, since the share is a promise about
problems the router has not seen), unless it is given.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ponder.strategies.compute_optimal import check_router
from ponder.strategies.router import LEVELS, VERSION, Predictor, RouterFileError, RouterPolicy, parse_router
from ponder.training.common import TrainingInputError, write_json
from ponder.training.router_config import RouterArgs
from ponder.training.router_data import STOP_OPTION, RouterData, build_data, find_probe, read_rows

log = logging.getLogger("ponder.train")

# Steps of 2.3%: a level's route changes where two arms' accuracy minus lambda x tokens cross, and a coarser grid can
# step over a whole route (at 26% steps it skipped the 32-sample arm of level 5 that lay between two grid points).
LAMBDAS = (0.0, *np.geomspace(1e-6, 1e-1, 501).tolist())
QUANTILES = (0.8, 0.6, 0.4, 0.2)  # level 1 is the fifth of the problems predicted easiest


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float, names: list[str], iters: int = 100) -> Predictor:
    """Logistic regression of soft labels ``y`` in [0, 1] on standardised ``x``, Newton steps, bias unpenalised."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = np.hstack([np.ones((len(x), 1)), (x - mean) / scale])
    w = np.zeros(z.shape[1])
    penalty = np.full(z.shape[1], l2)
    penalty[0] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -60, 60)))
        grad = z.T @ (p - y) + penalty * w
        hess = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return Predictor(features=names, mean=mean.tolist(), scale=scale.tolist(), weights=w[1:].tolist(), bias=float(w[0]))


def predict(model: Predictor, x: np.ndarray) -> np.ndarray:
    """``model.predict`` over the rows of ``x`` at once."""
    z = model.bias + ((x - np.array(model.mean)) / np.array(model.scale)) @ np.array(model.weights)
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


def level_cuts(p: np.ndarray) -> list[float]:
    """Four strictly decreasing cut points: the predictions' quintiles, nudged apart where they coincide."""
    cuts = [float(np.quantile(p, q)) for q in QUANTILES]
    for i in range(1, 4):
        cuts[i] = min(cuts[i], cuts[i - 1] - 1e-6)
    return [min(max(c, 0.0), 1.0) for c in cuts] if cuts[3] >= 0 else [1e-3 * (4 - i) for i in range(4)]


def levels_of(p: np.ndarray, cuts: list[float]) -> np.ndarray:
    return 1 + (p[:, None] < np.array(cuts)[None, :]).sum(axis=1)


@dataclass
class LevelMeans:
    """Per level (row 0: all problems), each arm's mean accuracy and mean tokens, and the level's problem count."""

    accuracy: np.ndarray  # (6, arms)
    tokens: np.ndarray  # (6, arms)
    problems: np.ndarray  # (6,)


def level_means(levels: np.ndarray, correct: np.ndarray, tokens: np.ndarray) -> LevelMeans:
    groups = [np.ones(len(levels), dtype=bool), *(levels == level for level in LEVELS)]
    acc = np.array([correct[g].mean(axis=0) if g.any() else np.zeros(correct.shape[1]) for g in groups])
    tok = np.array([tokens[g].mean(axis=0) if g.any() else np.zeros(tokens.shape[1]) for g in groups])
    return LevelMeans(acc, tok, np.array([g.sum() for g in groups]))


def routes_for(means: LevelMeans, lam: float) -> dict[int, int]:
    """Each level's arm: the best mean accuracy minus ``lam`` * mean tokens (ties: fewer tokens); a level with no
    problems takes the arm best over all of them."""
    value = means.accuracy - lam * means.tokens
    best = []
    for row in range(len(value)):
        top = np.flatnonzero(value[row] >= value[row].max() - 1e-12)
        best.append(int(top[np.argmin(means.tokens[row, top])]))
    return {level: best[level] if means.problems[level] else best[0] for level in LEVELS}


def choose_arms(levels: np.ndarray, correct: np.ndarray, tokens: np.ndarray, lam: float) -> dict[int, int]:
    """:func:`routes_for` on these problems."""
    return routes_for(level_means(levels, correct, tokens), lam)


def evaluate(
    levels: np.ndarray, correct: np.ndarray, tokens: np.ndarray, routes: dict[int, int]
) -> tuple[float, float]:
    """Accuracy and mean tokens when each problem runs its level's arm."""
    chosen = np.array([routes[int(level)] for level in levels])
    rows = np.arange(len(levels))
    return float(correct[rows, chosen].mean()), float(tokens[rows, chosen].mean())


@dataclass
class Fitted:
    """A router fitted on some problems: its predictor, cut points, and the levels of those problems."""

    model: Predictor
    cuts: list[float]
    levels: np.ndarray


def fit(data: RouterData, rows: np.ndarray, l2: float) -> Fitted:
    """The predictor (target: the share of arms that solved a problem) and its level cuts, on ``rows``."""
    model = fit_logistic(data.features[rows], data.correct[rows].mean(axis=1), l2, data.feature_names)
    p = predict(model, data.features[rows])
    cuts = level_cuts(p)
    return Fitted(model, cuts, levels_of(p, cuts))


def cross_validate(data: RouterData, cfg: RouterArgs, cap: np.ndarray) -> list[dict[str, float]]:
    """Per lambda, the held-out accuracy and mean tokens of routers fitted on the other folds, the standard error of
    those mean tokens, and, given each problem's token cap, the standard error of the mean tokens over the cap on a
    fresh set of ``cfg.holdout_problems`` problems (the folds' own estimate's error and that set's noise)."""
    n = len(data.correct)
    order = np.random.default_rng(cfg.seed).permutation(n)
    folds = np.array_split(order, cfg.folds)
    hits = np.zeros((len(LAMBDAS), n))
    spent = np.zeros((len(LAMBDAS), n))
    for k, held in enumerate(folds):
        train = np.concatenate([f for j, f in enumerate(folds) if j != k])
        fitted = fit(data, train, cfg.l2)
        held_levels = levels_of(predict(fitted.model, data.features[held]), fitted.cuts)
        means = level_means(fitted.levels, data.correct[train], data.tokens[train])
        for i, lam in enumerate(LAMBDAS):
            routes = routes_for(means, lam)
            chosen = np.array([routes[int(level)] for level in held_levels])
            hits[i, held] = data.correct[held, chosen]
            spent[i, held] = data.tokens[held, chosen]
    fresh = 1.0 / n + (1.0 / cfg.holdout_problems if cfg.holdout_problems else 0.0)
    sweep = []
    for i, lam in enumerate(LAMBDAS):
        point = {"lambda": lam, "accuracy": float(hits[i].mean()), "tokens": float(spent[i].mean())}
        point["tokens_se"] = float(spent[i].std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0
        # the share is of the reference's tokens on the same problems: their difference varies less than either
        point["over_cap_se"] = float((spent[i] - cap).std(ddof=1) * np.sqrt(fresh)) if n > 1 else 0.0
        sweep.append(point)
    return sweep


def choose_lambda(
    sweep: list[dict[str, float]], objective: str, cap: float, floor: float, confidence: float = 0.0
) -> dict[str, float]:
    """match_accuracy: the fewest held-out tokens with accuracy >= ``floor`` (none: the most accurate);
    within_tokens: the best held-out accuracy whose mean tokens, plus ``confidence`` standard errors of the tokens
    over the cap, are within ``cap`` (none: the cheapest)."""
    reached = [s for s in sweep if s["accuracy"] >= floor - 1e-9]
    within = [s for s in sweep if s["tokens"] + confidence * s["over_cap_se"] <= cap]
    if objective == "match_accuracy" and reached:
        return min(reached, key=lambda s: (s["tokens"], -s["accuracy"]))
    if objective == "within_tokens" and within:
        return max(within, key=lambda s: (s["accuracy"], -s["tokens"]))
    log.warning("router: no lambda meets the %s objective; the other one decides", objective)
    if objective == "match_accuracy":
        return max(sweep, key=lambda s: (s["accuracy"], -s["tokens"]))
    return min(sweep, key=lambda s: (s["tokens"], -s["accuracy"]))


def reference_arm(data: RouterData, name: str | None) -> int:
    """The arm the token target is a share of: ``name``, else the plain best_of_n arm (not adaptive: it draws all
    its samples) with the most samples, else the arm with the most tokens."""
    names = [a.name for a in data.arms]
    if name is not None:
        if name not in names:
            raise TrainingInputError(f"--reference {name!r}: no such arm; arms: {', '.join(names)}")
        return names.index(name)
    bon = [i for i, a in enumerate(data.arms) if a.strategy == "best_of_n" and STOP_OPTION not in a.strategy_options]
    if bon:
        return max(bon, key=lambda i: data.arms[i].samples)
    return int(np.argmax(data.tokens.mean(axis=0)))


def level_table(data: RouterData, levels: np.ndarray, routes: dict[int, int]) -> list[dict[str, Any]]:
    """Per predicted level: its problems, each arm's accuracy and mean tokens there, and the arm chosen."""
    table = []
    for level in LEVELS:
        rows = levels == level
        arms = (
            {
                a.name: {"accuracy": _r(data.correct[rows, i].mean()), "tokens": _r(data.tokens[rows, i].mean())}
                for i, a in enumerate(data.arms)
            }
            if rows.any()
            else {}
        )
        table.append({"level": level, "problems": int(rows.sum()), "arm": data.arms[routes[level]].name, "arms": arms})
    return table


def _r(value: float, digits: int = 4) -> float:
    return round(float(value), digits)


def _distinct(sweep: list[dict[str, float]]) -> list[dict[str, float]]:
    """The sweep as recorded: the first lambda of each run of lambdas with the same held-out figures."""
    points = [_rounded(point) for point in sweep]
    same = ("accuracy", "tokens")
    return [p for i, p in enumerate(points) if i == 0 or any(p[k] != points[i - 1][k] for k in same)]


def _rounded(point: dict[str, float], with_lambda: bool = True) -> dict[str, float]:
    """A cross-validated point of the lambda sweep as the policy file records it."""
    rounded = {
        "accuracy": _r(point["accuracy"]),
        "tokens": _r(point["tokens"], 1),
        "tokens_se": _r(point["tokens_se"], 1),
        "over_cap_se": _r(point["over_cap_se"], 1),
    }
    return {"lambda": point["lambda"], **rounded} if with_lambda else rounded


def check_config(cfg: RouterArgs) -> None:
    if cfg.folds < 2:
        raise TrainingInputError("--folds must be 2 or more")
    if cfg.token_ratio <= 0:
        raise TrainingInputError("--token-ratio must be positive")
    if cfg.token_confidence < 0:
        raise TrainingInputError("--token-confidence must be 0 or more")
    if cfg.holdout_problems < 0:
        raise TrainingInputError("--holdout-problems must be 0 or more")
    if cfg.lambda_tokens is not None and cfg.lambda_tokens < 0:
        raise TrainingInputError("--lambda-tokens must be 0 or more")
    if cfg.l2 < 0:
        raise TrainingInputError("--l2 must be 0 or more")
    if not cfg.features:
        raise TrainingInputError("--features: give at least one")
    out = Path(cfg.output)
    if out.exists() and not cfg.overwrite:
        raise TrainingInputError(f"{out} exists; pass --overwrite to replace it")


def load_data(cfg: RouterArgs) -> RouterData:
    """The logs read, the probe and the arms found, and the problems joined; refused when too few."""
    runs = read_rows(cfg.logs)
    probe = find_probe(runs, cfg.probe_run)
    unknown = [r for r in cfg.runs if r not in runs]
    if unknown:
        raise TrainingInputError(f"--runs: no run named {', '.join(unknown)}; runs: {', '.join(sorted(runs))}")
    arm_runs = list(cfg.runs) or [
        r for r in sorted(runs) if r != probe and runs[r][0]["request"].get("strategy") not in (None, "compute_optimal")
    ]
    if not arm_runs:
        raise TrainingInputError("no arm runs: the logs need runs of explicit strategies besides the probe")
    data = build_data(runs, probe, [r for r in arm_runs if r != probe], cfg.features, cfg.allow_test)
    if len(data.correct) < cfg.min_problems:
        raise TrainingInputError(
            f"{len(data.correct)} problems have a row in every run; --min-problems is {cfg.min_problems}"
        )
    return data


def train_router(cfg: RouterArgs) -> Path:
    """Fit the router on the logs and write its policy file; returns the file."""
    check_config(cfg)
    data = load_data(cfg)
    ref = reference_arm(data, cfg.reference)
    ref_acc, per_problem = float(data.correct[:, ref].mean()), data.tokens[:, ref].astype(float)
    if ref and not data.arms[ref].includes_probe:  # the reference ran alone, without a probe before it
        per_problem = per_problem - data.tokens[:, 0]
    ref_tokens, shares = float(per_problem.mean()), cfg.token_ratio * per_problem
    sweep = cross_validate(data, cfg, shares)
    cap, floor = float(shares.mean()), ref_acc - cfg.accuracy_margin
    if cfg.lambda_tokens is not None:
        chosen = {"lambda": cfg.lambda_tokens}
    else:
        chosen = choose_lambda(sweep, cfg.objective, cap, floor, cfg.token_confidence)
    lam = float(chosen["lambda"])
    fitted = fit(data, np.arange(len(data.correct)), cfg.l2)
    routes = choose_arms(fitted.levels, data.correct, data.tokens, lam)
    acc, tok = evaluate(fitted.levels, data.correct, data.tokens, routes)
    cv = min(sweep, key=lambda s: abs(s["lambda"] - lam)) if cfg.lambda_tokens is None else None
    policy = build_policy(
        data,
        fitted,
        routes,
        lam,
        {
            "logs": list(cfg.logs),
            "splits": data.splits,
            "problems": len(data.correct),
            "reference": {"arm": data.arms[ref].name, "accuracy": _r(ref_acc), "tokens": _r(ref_tokens, 1)},
            "objective": "lambda_tokens" if cfg.lambda_tokens is not None else cfg.objective,
            "token_ratio": cfg.token_ratio,
            "token_confidence": cfg.token_confidence,
            "holdout_problems": cfg.holdout_problems,
            "accuracy_margin": cfg.accuracy_margin,
            "fit": {"accuracy": _r(acc), "tokens": _r(tok, 1)},
            "cross_validated": None if cv is None else _rounded(cv, with_lambda=False),
            "levels": level_table(data, fitted.levels, routes),
            "sweep": _distinct(sweep),
        },
    )
    out = Path(cfg.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, policy.model_dump(mode="json"))
    log.info(
        "router: lambda %.3g; fit %.1f%% at %.0f tokens; reference %s %.1f%% at %.0f tokens -> %s",
        lam,
        100 * acc,
        tok,
        data.arms[ref].name,
        100 * ref_acc,
        ref_tokens,
        out,
    )
    return out


def build_policy(
    data: RouterData, fitted: Fitted, routes: dict[int, int], lam: float, training: dict[str, Any]
) -> RouterPolicy:
    """The policy file's contents, validated as `ponder serve` will validate them."""
    used = sorted(set(routes.values()))
    options = data.probe_options
    raw = {
        "version": VERSION,
        "description": "Learned compute-optimal router (ponder train router): the probe's and the question's features "
        "-> predicted solve rate -> difficulty level -> arm.",
        "verifier": data.verifier,
        "probe_samples": data.probe_samples,
        "answer_extraction": options.get("answer_extraction", "content"),
        "aggregation": options.get("aggregation", "min"),
        "probe_answer": options.get("probe_answer", "majority"),
        "difficulty": fitted.model.model_dump(),
        "cuts": fitted.cuts,
        "arms": [data.arms[i].model_dump() for i in used],
        "routes": {level: data.arms[i].name for level, i in routes.items()},
        "lambda_tokens": lam,
        "training": training,
    }
    try:
        policy = parse_router(raw, "trained router")
        check_router(policy)
    except (RouterFileError, ValueError) as exc:
        raise TrainingInputError(f"the logs give an unusable router: {exc}") from None
    return policy
