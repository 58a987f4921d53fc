"""Verifier quality on held-out policy samples: pairwise and step accuracy, AUROC, best-of-k selection; model cards."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ponder.core.aggregate import aggregate
from ponder.core.sidecar import read_sidecar
from ponder.verifiers.formats import prm_features, render_prompt

STEP_SEPARATOR = "\n"


# ------------------------------------------------------------------------------------------------ scoring


def _batches(n: int, size: int) -> list[range]:
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


def orm_scores(folder: str | Path, records: Sequence[dict[str, Any]]) -> list[float]:
    """An outcome model's score for every record's (messages, completion), exactly as serving computes it."""
    from ponder.verifiers.orm_pooled import open_orm

    verifier = open_orm(folder, device="cpu")
    items = [(r["messages"], r["completion"]) for r in records]
    return [x for batch in _batches(len(items), 256) for x in verifier.score_batch([items[i] for i in batch])]


def prm_step_scores(
    model: Any, tokenizer: Any, records: Sequence[dict[str, Any]], batch_size: int = 64
) -> list[list[float]]:
    """The process model's sigmoid score at the end of every step of every record (``[]`` for no steps)."""
    import torch

    model.eval()
    feats = [
        prm_features(tokenizer, render_prompt(tokenizer, r["messages"]), r["steps"], STEP_SEPARATOR) for r in records
    ]
    order = sorted(range(len(feats)), key=lambda i: len(feats[i][0]))
    scores: list[list[float]] = [[] for _ in records]
    pad = tokenizer.pad_token_id
    with torch.no_grad():
        for batch in _batches(len(order), batch_size):
            rows = [feats[order[i]] for i in batch]
            width = max(len(ids) for ids, _ in rows)
            input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in rows])
            mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows])
            probs = torch.sigmoid(model(input_ids=input_ids, attention_mask=mask).logits.squeeze(-1))
            for row, i in enumerate(batch):
                scores[order[i]] = [float(probs[row, p]) for p in rows[row][1]]
    return scores


# ------------------------------------------------------------------------------------------------ metrics


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the ROC curve (Mann-Whitney U, ties counted half); None when one class is absent."""
    pos = sum(1 for y in labels if y)
    neg = len(labels) - pos
    if not pos or not neg:
        return None
    ranked = sorted(zip(scores, labels, strict=True), key=lambda t: t[0])
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        mid = (i + j + 1) / 2  # average 1-based rank of the tied run
        rank_sum += mid * sum(1 for t in ranked[i:j] if t[1])
        i = j
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def _groups(records: Sequence[dict[str, Any]]) -> list[list[int]]:
    """Indices of the records of each problem, in first-seen order."""
    by: dict[tuple, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        by[(r["split"], r["seed"])].append(i)
    return list(by.values())


def selection(records: Sequence[dict[str, Any]], scores: Sequence[float]) -> dict[str, Any]:
    """Accuracy of picking each problem's highest-scored sample (first on ties), with the baselines beside it."""
    groups = _groups(records)
    picked = [max(g, key=lambda i: scores[i]) for g in groups]
    by_level: dict[int, list[bool]] = defaultdict(list)
    for g, i in zip(groups, picked, strict=True):
        by_level[records[g[0]]["level"]].append(bool(records[i]["correct"]))
    return {
        "best_of_k": sum(records[i]["correct"] for i in picked) / len(groups),
        "by_level": {str(lv): sum(v) / len(v) for lv, v in sorted(by_level.items())},
    }


def baselines(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What selection is measured against: mean sample accuracy (random pick), majority vote, pass@k (oracle)."""
    from collections import Counter

    from ponder.tasks import parse_output

    groups = _groups(records)
    k = len(groups[0])
    mean = sum(sum(records[i]["correct"] for i in g) / len(g) for g in groups) / len(groups)
    oracle = sum(any(records[i]["correct"] for i in g) for g in groups) / len(groups)
    vote_hits = 0
    for g in groups:
        answers = [(parse_output(records[i]["completion"]).answer, i) for i in g]
        counts = Counter(a for a, _ in answers if a)
        if counts:
            top = counts.most_common(1)[0][0]
            vote_hits += bool(records[next(i for a, i in answers if a == top)]["correct"])
    levels = sorted({r["level"] for r in records})
    per_level = {}
    for lv in levels:
        lg = [g for g in groups if records[g[0]]["level"] == lv]
        per_level[str(lv)] = {
            "n": len(lg),
            "mean_sample_acc": sum(sum(records[i]["correct"] for i in g) / len(g) for g in lg) / len(lg),
            f"pass@{k}": sum(any(records[i]["correct"] for i in g) for g in lg) / len(lg),
        }
    return {
        "problems": len(groups),
        "k": k,
        "mean_sample_acc": mean,
        "majority_vote": vote_hits / len(groups),
        f"pass@{k}": oracle,
        "by_level": per_level,
    }


def pairwise_accuracy(records: Sequence[dict[str, Any]], scores: Sequence[float]) -> dict[str, Any]:
    """Over all (correct, wrong) sample pairs of the same problem: how often the correct one scores higher."""
    wins = ties = pairs = 0
    for g in _groups(records):
        good = [scores[i] for i in g if records[i]["correct"]]
        bad = [scores[i] for i in g if not records[i]["correct"]]
        for a in good:
            for b in bad:
                pairs += 1
                wins += a > b
                ties += a == b
    return {"pairs": pairs, "pairwise_accuracy": (wins + ties / 2) / pairs if pairs else None}


def orm_report(records: Sequence[dict[str, Any]], scores: Sequence[float]) -> dict[str, Any]:
    """ORM metrics: pairwise accuracy, AUROC of the score against correctness, best-of-k selection, baselines."""
    return {
        **pairwise_accuracy(records, scores),
        "auroc_correct": auroc(scores, [bool(r["correct"]) for r in records]),
        "selection": selection(records, scores),
        "baselines": baselines(records),
    }


def _share(flags: Sequence[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def prm_report(records: Sequence[dict[str, Any]], step_scores: Sequence[Sequence[float]]) -> dict[str, Any]:
    """PRM metrics against the exact step labels, and best-of-k selection with min and last aggregation."""
    flat = [
        (s, bool(y)) for r, ss in zip(records, step_scores, strict=True) for s, y in zip(ss, r["labels"], strict=True)
    ]
    steps = len(flat)
    hits = sum((s >= 0.5) == y for s, y in flat)
    first_bad = []  # does the PRM's first sub-0.5 step coincide with the first wrong step?
    for r, ss in zip(records, step_scores, strict=True):
        if not all(r["labels"]):
            truth = r["labels"].index(False)
            guess = next((i for i, s in enumerate(ss) if s < 0.5), None)
            first_bad.append(truth == guess)
    return {
        "steps": steps,
        "step_accuracy": hits / steps if steps else None,
        "step_auroc": auroc([s for s, _ in flat], [y for _, y in flat]),
        "good_step_rate": sum(y for _, y in flat) / steps if steps else None,  # the policy's own step accuracy
        # of the steps the policy got wrong, the share the PRM scores below 0.5 (and of the right ones, above)
        "wrong_step_recall": _share([s < 0.5 for s, y in flat if not y]),
        "right_step_recall": _share([s >= 0.5 for s, y in flat if y]),
        "first_error_found": sum(first_bad) / len(first_bad) if first_bad else None,
        "auroc_correct_min": auroc([aggregate(ss, "min") for ss in step_scores], [bool(r["correct"]) for r in records]),
        "pairwise_accuracy_min": pairwise_accuracy(records, [aggregate(ss, "min") for ss in step_scores])[
            "pairwise_accuracy"
        ],
        "selection_min": selection(records, [aggregate(ss, "min") for ss in step_scores]),
        "selection_last": selection(records, [aggregate(ss, "last") for ss in step_scores]),
        "baselines": baselines(records),
    }


def measure_verifier(folder: str | Path, records: Sequence[dict[str, Any]], kind: str) -> dict[str, Any]:
    """Load a saved ORM or PRM folder and report on ``records``."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    if kind == "orm":
        return orm_report(records, orm_scores(folder, records))
    if read_sidecar(folder).format == "generative":
        return prm_report(records, generative_step_scores(folder, records))
    model = AutoModelForTokenClassification.from_pretrained(folder)
    return prm_report(records, prm_step_scores(model, tokenizer, records))


def generative_step_scores(folder: str | Path, records: Sequence[dict[str, Any]]) -> list[list[float]]:
    """A generative PRM's step scores, exactly as serving computes them."""
    from ponder.verifiers.generative_prm import GenerativePRM

    verifier = GenerativePRM(folder, device="cpu")
    items = [(r["messages"], r["steps"]) for r in records]
    return [row for batch in _batches(len(items), 256) for row in verifier.score_batch([items[i] for i in batch])]


# ------------------------------------------------------------------------------------------------ model cards


def _pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1%}"


def selection_table(report: dict[str, Any], rows: list[tuple[str, dict[str, Any]]]) -> str:
    """Best-of-k accuracy per level: the selectors in ``rows`` against mean sample accuracy and pass@k."""
    base = report["baselines"]
    k = base["k"]
    head = "| level | n | mean sample acc | " + " | ".join(name for name, _ in rows) + f" | pass@{k} (oracle) |"
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for lv, b in base["by_level"].items():
        cells = " | ".join(_pct(sel["by_level"].get(lv)) for _, sel in rows)
        lines.append(f"| {lv} | {b['n']} | {_pct(b['mean_sample_acc'])} | {cells} | {_pct(b[f'pass@{k}'])} |")
    cells = " | ".join(_pct(sel["best_of_k"]) for _, sel in rows)
    lines.append(
        f"| all | {base['problems']} | {_pct(base['mean_sample_acc'])} | {cells} | {_pct(base[f'pass@{k}'])} |"
    )
    return "\n".join(lines)


def _base_model(args: dict[str, Any]) -> str:
    """The folder a verifier's body came from (``init_model`` in configs written before ``--base-model``)."""
    return args.get("base_model") or args.get("init_model") or args["policy"]


def _for_whom(args: dict[str, Any]) -> str:
    """Whose answers the verifier learned to judge: the bundled policy's samples, or a user's file."""
    return f"learned from `{args['dataset']}`" if args.get("dataset") else "for the bundled policy"


def _architecture(config: dict[str, Any], default: str) -> str:
    return (config.get("architectures") or [default])[0]


def _orm_intro(args: dict[str, Any], config: dict[str, Any]) -> tuple[str, str, list[str]]:
    """Title, summary and model/input lines of an ORM card."""
    if args.get("head") == "token-min":
        return _pooled_orm_intro(args, config)
    user = bool(args.get("dataset"))
    what = (
        f"An outcome reward model {_for_whom(args)}, trained by `ponder train rm --loss {args['loss']}` "
        + (
            f"(TRL `RewardTrainer`, Bradley-Terry on {'(chosen, rejected)' if user else '(correct, wrong)'} pairs of "
            "the same prompt)"
            if args["loss"] == "bt"
            else f"(a Plackett-Luce listwise loss over each prompt's ranked {'completions' if user else 'samples'})"
        )
        + ". It reads a whole answer and returns one number: higher is better."
    )
    fmt = [
        f"- `{_architecture(config, 'LlamaForSequenceClassification')}` (`AutoModelForSequenceClassification`, "
        "`num_labels=1`), body "
        f"initialised from `{_base_model(args)}`, pad token id {config.get('pad_token_id')}.",
        "- Input: `ponder.verifiers.formats.orm_text(tokenizer, messages, completion)` = the chat template up to the "
        "assistant turn, then the whole completion (`<think>...\\n</think>answer`), tokenized without special "
        "tokens. Score: the raw logit at the last token.",
    ]
    return "outcome reward model", what, fmt


def _pooled_orm_intro(args: dict[str, Any], config: dict[str, Any]) -> tuple[str, str, list[str]]:
    """Title, summary and model/input lines of a token-pooled ORM's card (``--head token-min``)."""
    what = (
        f"An outcome reward model {_for_whom(args)}, trained by `ponder train rm --head token-min` on outcome labels "
        "only (Bradley-Terry on (correct, wrong) pairs of the same prompt). A frozen causal LM reads the question and "
        "the whole answer; a learned linear head scores every answer token from the LM's reading of it, and the "
        "answer's score is the soft minimum of those: one wrong digit anywhere can sink it. Higher is better."
    )
    fmt = [
        f"- `{_architecture(config, 'LlamaForCausalLM')}` (`AutoModelForCausalLM`), the frozen LM of "
        f"`{_base_model(args)}`, read with every number {args.get('number_order', 'as_written').replace('_', ' ')}; "
        "the head (5 numbers) is in `ponder.json`.",
        "- Per answer token t, from the LM's prediction of it: its log-probability, the log-probability of the LM's "
        "own first choice, the prediction's entropy, and the log-probability of the step so far "
        "(`ponder.verifiers.orm_pooled.FEATURES`). Score: `-tau * logsumexp(-(w . f_t + b) / tau)` over the answer's "
        f"tokens, tau = {args.get('pool_temperature')}.",
    ]
    return "outcome reward model", what, fmt


def _prm_intro(args: dict[str, Any], config: dict[str, Any]) -> tuple[str, str, list[str]]:
    """Title, summary and model/input/loss lines of a PRM card."""
    what = (
        f"A process reward model {_for_whom(args)}, trained by `ponder train prm "
        + (
            f"--dataset-format {args.get('dataset_format', 'auto')}"
            if args.get("dataset")
            else f"--labels {args['labels']}"
        )
        + "`: "
        "for every reasoning step it gives the probability that the reasoning is still on track after it."
    )
    fmt = [
        f"- `{_architecture(config, 'LlamaForTokenClassification')}` (`AutoModelForTokenClassification`, "
        "`num_labels=1`), body initialised "
        f"from `{_base_model(args)}`.",
        '- Input: `ponder.verifiers.formats.prm_features(tokenizer, render_prompt(tokenizer, messages), steps, "\\n")` '
        "= the chat template up to the assistant turn, `<think>`, then every step followed by `\\n`. Score of "
        "step i: `sigmoid(logit[positions[i]])`, read at the token that ends the step's separator.",
        "- Loss: binary cross-entropy with logits at the step positions only (soft targets for `mc-soft`).",
    ]
    return "process reward model", what, fmt


def _format_section(folder: Path, train: dict[str, Any], sidecar: dict[str, Any]) -> list[str]:
    """Title, summary and the Format section."""
    args = train["args"]
    config = json.loads((folder / "config.json").read_text())
    if sidecar["kind"] == "orm":
        title, what, fmt = _orm_intro(args, config)
    else:
        title, what, fmt = _prm_intro(args, config)
    article = ("an " if title[0] in "aeiou" else "a ") if args.get("dataset") else "the bundled "
    return [
        f"# {folder.name}: {article}{title}",
        "",
        what,
        "",
        "## Format",
        "",
        *fmt,
        f"- `ponder.json`: `{json.dumps(sidecar)}`",
        f"- {train['parameters'] / 1e6:.2f}M parameters, float32; tokenizer and chat template from "
        f"`{_base_model(args)}` (a plain Question/Answer template where it had none).",
        "",
    ]


def _data_section(data: dict[str, Any]) -> list[str]:
    """The Data section: the policy samples (or user file) trained on, and the run's notes."""
    parts = ["## Data", ""]
    if "train" in data and "split" in data["train"]:
        t = data["train"]
        parts += [
            f"Training: {t['problems']} `{t['split']}` problems (seeds {t['seeds'][0]:,} to {t['seeds'][1] - 1:,}, "
            f"levels round-robin {t['levels']}), {t['k']} policy samples each at temperature {t['temperature']} "
            f"({t['engine']} engine through `ponder.engines.factory.build_engine`): {t['samples']} samples, "
            f"{t['correct']:.1%} of them correct (reasoning-gym `score_answer`).",
            "",
        ]
    else:
        fmt = f" (format {data['train']['format']})" if data["train"].get("format") else ""
        parts += [f"Training: your file `{data['train'].get('source')}`{fmt}.", ""]
    parts += [f"- {line}" for line in data.get("notes", [])]
    if data.get("notes"):
        parts.append("")
    return parts


def _training_section(train: dict[str, Any]) -> list[str]:
    """The Training section: optimiser, time, final metrics, versions."""
    args = train["args"]
    final = {k: round(v, 4) if isinstance(v, float) else v for k, v in train["metrics"].items()}
    return [
        "## Training",
        "",
        f"- {train['steps']} optimizer steps, batch {args['batch_size']} x accumulation {args['grad_accum']}, AdamW "
        f"lr {args['learning_rate']} ({args['lr_scheduler']}, warmup {args['warmup_ratio']}), weight decay "
        f"{args['weight_decay']}, {args['epochs']} epoch(s), seed {args['seed']}.",
        f"- Time on {train['threads']} CPU thread(s), shared with other work: "
        + ", ".join(f"{name} {sec / 60:.1f} min" for name, sec in train["seconds"].items())
        + ".",
        f"- Final metrics: `{json.dumps(final)}`",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in train['versions'].items())}.",
        "",
    ]


def _reproduce_section(folder: Path, kind: str, args: dict[str, Any]) -> list[str]:
    """The ``ponder train rm|prm`` command that retrains this folder."""
    from ponder.training.config_args import to_cli_flags

    if kind == "orm":
        from ponder.training.rm_config import RMArgs as Args
    else:
        from ponder.training.prm_config import PRMArgs as Args
    renamed = {"base_model" if k == "init_model" else k: v for k, v in args.items()}  # older configs' name
    known = {f.name for f in dataclasses.fields(Args)}
    flags = " ".join(
        to_cli_flags(Args(**{k: v for k, v in renamed.items() if k in known}), skip=("output_dir", "overwrite"))
    )
    return [
        "Reproduce:"
        if args.get("dataset")
        else "Reproduce (part of `make models`; the policy samples are cached under `build/samples/`):",
        "",
        "```",
        f"ponder train {'rm' if kind == 'orm' else 'prm'} --output-dir {folder} --overwrite {flags}".rstrip(),
        "```",
        "",
    ]


def _orm_measured(evaluation: dict[str, Any]) -> list[str]:
    """ORM results: pairwise accuracy, AUROC, best-of-k against the baselines."""
    base = evaluation["baselines"]
    k = base["k"]
    return [
        f"- Pairwise accuracy (correct vs wrong sample of the same problem, {evaluation['pairs']} pairs): "
        f"**{_pct(evaluation['pairwise_accuracy'])}**.",
        f"- AUROC of the score for answer correctness over all samples: {evaluation['auroc_correct']:.3f}.",
        "",
        f"Best-of-{k} (pick the highest-scored of the {k} samples) against picking at random (mean sample "
        f"accuracy), majority vote ({_pct(base['majority_vote'])} overall) and the oracle (pass@{k}):",
        "",
        selection_table(evaluation, [(f"ORM best-of-{k}", evaluation["selection"])]),
        "",
    ]


def _prm_measured(evaluation: dict[str, Any]) -> list[str]:
    """PRM results: step accuracy and AUROC, first-error detection, best-of-k with min and last aggregation."""
    base = evaluation["baselines"]
    k = base["k"]
    return [
        f"- Step accuracy against the exact labels (score >= 0.5 means good; {evaluation['steps']} steps, "
        f"{_pct(evaluation['good_step_rate'])} of them good): **{_pct(evaluation['step_accuracy'])}**; "
        f"step AUROC **{evaluation['step_auroc']:.3f}**.",
        f"- Of the solutions with a wrong step, the first step scored below 0.5 is the first wrong one in "
        f"{_pct(evaluation['first_error_found'])}.",
        f"- Solution score = min over steps: AUROC for answer correctness over all samples "
        f"{evaluation['auroc_correct_min']:.3f}; pairwise accuracy (correct vs wrong sample of the same "
        f"problem) {_pct(evaluation.get('pairwise_accuracy_min'))}.",
        "",
        f"Best-of-{k} with the solution score = min over its steps, or the last step's score, against "
        f"picking at random (mean sample accuracy), majority vote ({_pct(base['majority_vote'])} overall) and "
        f"the oracle (pass@{k}):",
        "",
        selection_table(
            evaluation,
            [
                (f"PRM-min best-of-{k}", evaluation["selection_min"]),
                (f"PRM-last best-of-{k}", evaluation["selection_last"]),
            ],
        ),
        "",
    ]


def _measured_section(evaluation: dict[str, Any], kind: str) -> list[str]:
    """The Measured section: the held-out samples, then the ORM's or PRM's results on them."""
    e = evaluation["data"]
    return [
        "## Measured",
        "",
        f"{e['problems']} held-out `{e['split']}` problems (seeds {e['seeds'][0]:,} to {e['seeds'][1] - 1:,}, "
        f"levels {e['levels']} round-robin), {evaluation['baselines']['k']} policy samples each at temperature "
        f"{e['temperature']}: {e['samples']} samples. Written to `eval.json` by the training run.",
        "",
        *(_orm_measured(evaluation) if kind == "orm" else _prm_measured(evaluation)),
    ]


_LIMITATIONS = (
    "## Limitations",
    "",
    "Trained only on the bundled policy's arithmetic traces, in this exact format; it has not seen other "
    "domains or other policies' styles. Held-out questions at low levels can repeat training questions as text "
    "(few distinct level-1 problems exist).",
    "",
)


def _user_data_limitations(args: dict[str, Any]) -> tuple[str, ...]:
    return (
        "## Limitations",
        "",
        f"Trained only on `{args['dataset']}`: it judges answers as that file's labels do, for prompts and answer "
        "styles like its rows; nothing measured it on held-out data here.",
        "",
    )


def render_card(folder: Path, train: dict[str, Any], evaluation: dict[str, Any] | None, extra: str = "") -> str:
    """The model card of an ORM or PRM folder."""
    sidecar = json.loads((folder / "ponder.json").read_text())
    kind = sidecar["kind"]
    parts = [
        *_format_section(folder, train, sidecar),
        *_data_section(train["data"]),
        *_training_section(train),
        *_reproduce_section(folder, kind, train["args"]),
    ]
    if evaluation:
        parts += _measured_section(evaluation, kind)
    if extra:
        parts += [extra, ""]
    parts += _LIMITATIONS if not train["args"].get("dataset") else _user_data_limitations(train["args"])
    return "\n".join(parts)


def write_card(folder: str | Path, extra: str = "") -> Path:
    """Write ``folder/README.md`` from ``training_config.json`` and ``eval.json`` (optional)."""
    folder = Path(folder)
    train = json.loads((folder / "training_config.json").read_text())
    evaluation = json.loads((folder / "eval.json").read_text()) if (folder / "eval.json").is_file() else None
    extra_file = folder / "logs" / "card_extra.md"
    if not extra and extra_file.is_file():
        extra = extra_file.read_text().strip()
    path = folder / "README.md"
    path.write_text(render_card(folder, train, evaluation, extra))
    return path


def evaluate_into(
    folder: Path, kind: str, records: Sequence[dict[str, Any]], data: dict[str, Any], log: Callable[..., None]
) -> dict[str, Any]:
    """Measure the saved verifier on held-out records; write ``eval.json`` and the model card."""
    report = {"kind": kind, "data": data, **measure_verifier(folder, records, kind)}
    (folder / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    write_card(folder)
    log("eval: %s", json.dumps({k: v for k, v in report.items() if not isinstance(v, dict)}))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ponder.training.verifier_metrics", description=__doc__)
    parser.add_argument("model_dir")
    parser.add_argument("--samples", help="Held-out policy samples (JSONL from ponder.training.samples) to measure on.")
    parser.add_argument("--card-only", action="store_true", help="Only rewrite README.md from the saved JSON files.")
    args = parser.parse_args(argv)
    folder = Path(args.model_dir)
    if not args.card_only:
        from ponder.training.samples import read_jsonl

        rows = read_jsonl(args.samples)
        header, records = rows[0].get("header", {}), [r for r in rows if "header" not in r]
        kind = json.loads((folder / "ponder.json").read_text())["kind"]
        from ponder.tasks import SPLITS

        start = SPLITS[header["split"]].start
        data = {
            "split": header["split"],
            "problems": header["count"],
            "seeds": [start, start + header["count"]],
            "levels": header["levels"],
            "k": header["k"],
            "temperature": header["temperature"],
            "samples": len(records),
        }
        report = {"kind": kind, "data": data, **measure_verifier(folder, records, kind)}
        (folder / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    print(write_card(folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
