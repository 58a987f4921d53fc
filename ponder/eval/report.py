"""Aggregate graded rows into per-run figures and write ``<run>.jsonl``, ``summary.json``, ``summary.md`` and plots."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ponder.eval.specs import RunSpec


def _mean(values: Sequence[float | int | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def _quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Figures of a set of rows. Accuracy counts a failed request as wrong; means are over answered problems."""
    answered = [r for r in rows if r.get("error") is None]
    latencies = [r["latency_s"] for r in answered if r.get("latency_s") is not None]
    spent = [r.get("spent") or {} for r in answered]
    n = len(rows)
    return {
        "n": n,
        "correct": sum(bool(r.get("correct")) for r in rows),
        "errors": n - len(answered),
        "accuracy": sum(bool(r.get("correct")) for r in rows) / n if n else None,
        "mean_score": _mean([r.get("score") for r in rows]),
        # over the n choices of each answered request: any correct (pass@n), and the share correct
        "pass_at_n": sum((r.get("choices_correct") or 0) > 0 for r in rows) / n if n else None,
        "choice_accuracy": _mean([r["choices_correct"] / r["choices"] for r in answered if r.get("choices")]),
        "mean_completion_tokens": _mean([r.get("completion_tokens") for r in answered]),
        "mean_reasoning_tokens": _mean([r.get("reasoning_tokens") for r in answered]),
        "mean_spent_samples": _mean([s.get("samples") for s in spent]),
        "mean_spent_tokens": _mean([s.get("tokens") for s in spent]),
        "mean_latency_s": _mean(latencies),
        "p50_latency_s": _quantile(latencies, 0.5),
        "p90_latency_s": _quantile(latencies, 0.9),
    }


def summarize_run(run: RunSpec, rows: Sequence[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    """One run's entry of ``summary.json``: its request, overall figures, and figures by level and by task."""
    levels = sorted({r["level"] for r in rows})
    tasks = sorted({r["task"] for r in rows})
    first_error = next((r["error"] for r in rows if r.get("error")), None)
    return {
        "name": run.name,
        "series": run.series,
        "label": run.label,
        "request": run.body,
        "wall_s": round(wall_s, 3),
        "overall": summarize(rows),
        "by_level": {str(lv): summarize([r for r in rows if r["level"] == lv]) for lv in levels},
        "by_task": {t: summarize([r for r in rows if r["task"] == t]) for t in tasks},
        "first_error": first_error,
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _request_text(body: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in body.items()) or "(server defaults)"


def markdown(summary: dict[str, Any]) -> str:
    """``summary.md``: the command, the problems, one overview table, a by-level matrix, then each run by level."""
    runs = summary["runs"]
    problems = summary["problems"]
    lines = [
        "# ponder eval",
        "",
        f"- command: `{summary['command']}`",
        f"- date: {summary['date']}; target: {summary['target']}; model: `{summary['model']}`",
        f"- problems: {problems['total']} from split `{problems['split']}` ({problems['per_level']} per level; "
        f"levels {problems['levels']}; tasks {', '.join(problems['tasks'])}), graded by reasoning-gym's score_answer "
        "on the visible `content` of choice 0",
        "- accuracy: choice 0 correct; pass@n: any of the request's n choices correct (= accuracy when n=1); "
        "a failed request counts as wrong; token and latency means are over answered problems; "
        "tokens = `usage.completion_tokens` (every generated token, all candidates)",
        "",
        "## Runs",
        "",
        "| run | request | n | accuracy | pass@n | mean tokens | mean spent samples | mean latency s | "
        "p90 latency s | errors | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        o = run["overall"]
        lines.append(
            f"| {run['name']} | {_request_text(run['request'])} | {o['n']} | {_pct(o['accuracy'])} | "
            f"{_pct(o['pass_at_n'])} | "
            f"{_num(o['mean_completion_tokens'])} | {_num(o['mean_spent_samples'], 2)} | "
            f"{_num(o['mean_latency_s'], 3)} | {_num(o['p90_latency_s'], 3)} | {o['errors']} | {run['wall_s']:.1f} |"
        )
    levels = sorted({lv for run in runs for lv in run["by_level"]}, key=int)
    if levels:
        lines += ["", "## Accuracy by level", "", "| run | " + " | ".join(f"L{lv}" for lv in levels) + " | all |"]
        lines.append("|---" * (len(levels) + 2) + "|")
        for run in runs:
            cells = [_pct(run["by_level"].get(lv, {}).get("accuracy")) for lv in levels]
            lines.append(f"| {run['name']} | " + " | ".join(cells) + f" | {_pct(run['overall']['accuracy'])} |")
    for run in runs:
        lines += [
            "",
            f"## {run['name']}",
            "",
            f"request: {_request_text(run['request'])}",
            "",
            "| level | n | accuracy | pass@n | mean tokens | mean reasoning tokens | mean latency s | errors |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, s in [*run["by_level"].items(), ("all", run["overall"])]:
            lines.append(
                f"| {name} | {s['n']} | {_pct(s['accuracy'])} | {_pct(s['pass_at_n'])} | "
                f"{_num(s['mean_completion_tokens'])} | "
                f"{_num(s['mean_reasoning_tokens'])} | {_num(s['mean_latency_s'], 3)} | {s['errors']} |"
            )
        if run["first_error"]:
            lines += ["", f"first error: `{run['first_error']}`"]
    return "\n".join(lines) + "\n"


def _series(runs: Sequence[dict[str, Any]], pick) -> dict[str, list[tuple[float, float, str]]]:
    """Points (mean tokens, accuracy, label) per series, sorted by tokens; runs with no answers are left out."""
    out: dict[str, list[tuple[float, float, str]]] = {}
    for run in runs:
        stats = pick(run)
        if not stats or stats.get("mean_completion_tokens") is None or stats.get("accuracy") is None:
            continue
        label = run["label"] or _budget_label(run["request"]) or ""
        out.setdefault(run["series"], []).append((stats["mean_completion_tokens"], stats["accuracy"], label))
    return {k: sorted(v) for k, v in out.items()}


def _budget_label(body: dict[str, Any]) -> str:
    budget = body.get("budget") or {}
    return ",".join(f"{k.removeprefix('max_')}={v}" for k, v in budget.items())


_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def _short_labels(points: list[tuple[float, float, str]]) -> list[str]:
    """``max_samples=16`` becomes ``16`` when every point of the series varies the same one key."""
    keys = {label.partition("=")[0] for _, _, label in points if label}
    if len(keys) == 1 and all("=" in label and "," not in label for _, _, label in points if label):
        return [label.partition("=")[2] for _, _, label in points]
    return [label for _, _, label in points]


def _draw(ax, series: dict[str, list[tuple[float, float, str]]], title: str) -> None:
    import matplotlib

    colors = matplotlib.colormaps["tab20"].colors
    for i, (name, points) in enumerate(series.items()):
        xs, ys, _ = zip(*points, strict=True)
        style = {"color": colors[(2 * i) % 20 + (i // 10) % 2], "marker": _MARKERS[i % len(_MARKERS)]}
        ax.plot(xs, ys, label=name, markersize=5, **style)
        for (x, y, _), label in zip(points, _short_labels(points), strict=True):
            if label:
                ax.annotate(label, (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6, color=style["color"])
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("mean generated tokens per problem (log)")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)


def plot(summary: dict[str, Any], out_dir: Path) -> list[Path]:
    """``accuracy_vs_tokens.png`` (all levels) and ``accuracy_vs_tokens_by_level.png`` (one panel per level)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = summary["runs"]
    written = []
    overall = _series(runs, lambda r: r["overall"])
    if not overall:
        return written
    fig, ax = plt.subplots(figsize=(10, 6))
    _draw(ax, overall, f"accuracy vs tokens ({summary['problems']['total']} problems; points: budget)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    path = out_dir / "accuracy_vs_tokens.png"
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    written.append(path)

    levels = sorted({lv for run in runs for lv in run["by_level"]}, key=int)
    if len(levels) > 1:
        cols = min(3, len(levels))
        rows = math.ceil(len(levels) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 4 * rows), squeeze=False)
        for ax, lv in zip(axes.flat, levels, strict=False):
            _draw(ax, _series(runs, lambda r, lv=lv: r["by_level"].get(lv)), f"level {lv}")
        handles, names = axes.flat[0].get_legend_handles_labels()
        spare = list(axes.flat)[len(levels) :]
        for ax in spare:
            ax.set_axis_off()
        if spare:
            spare[0].legend(handles, names, fontsize=8, loc="center")
        else:
            fig.legend(handles, names, fontsize=8, loc="lower center", ncol=4)
        path = out_dir / "accuracy_vs_tokens_by_level.png"
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def write_rows(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with path.open("w") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_summary(summary: dict[str, Any], out_dir: Path, plots: bool = True) -> list[Path]:
    """``summary.json``, ``summary.md`` and, for two runs or more, the plots; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out_dir / "summary.md").write_text(markdown(summary))
    written = [out_dir / "summary.json", out_dir / "summary.md"]
    if plots and len(summary["runs"]) > 1:
        written += plot(summary, out_dir)
    return written
