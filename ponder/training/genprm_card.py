"""Measure a generative PRM on the policy's held-out samples; write its ``eval.json`` and model card."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ponder.core.sidecar import read_sidecar
from ponder.training.common import write_json


def measure(folder: Path, samples: list[dict[str, Any]], data: dict[str, Any]) -> dict[str, Any]:
    """The PRM report (step labels, selection among each problem's samples) of the folder on ``samples``."""
    from ponder.training.verifier_metrics import generative_step_scores, prm_report

    report = {"kind": "prm", "format": "generative", "data": data}
    report.update(prm_report(samples, generative_step_scores(folder, samples)))
    write_json(folder / "eval.json", report)
    return report


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _measured(report: dict[str, Any]) -> list[str]:
    base, pick = report["baselines"], report["selection_min"]
    data = report["data"]
    pass_k = base[f"pass@{data['k']}"]
    return [
        "## Measured",
        "",
        f"On {data['problems']} `{data['split']}` problems x {data['k']} policy samples at temperature "
        f"{data['temperature']} (`{data['policy']}`), with exact step labels (a step is right when it equals the gold "
        "step at its position and every earlier step is right):",
        "",
        "| measure | value |",
        "|---|---|",
        f"| steps judged | {report['steps']} |",
        f"| the policy's own step accuracy | {_pct(report['good_step_rate'])} |",
        f"| wrong steps scored below 0.5 | {_pct(report['wrong_step_recall'])} |",
        f"| right steps scored at or above 0.5 | {_pct(report['right_step_recall'])} |",
        f"| step AUROC | {report['step_auroc']:.3f} |",
        f"| first wrong step found | {_pct(report['first_error_found'])} |",
        f"| AUROC of min-aggregated score against the final answer | {report['auroc_correct_min']:.3f} |",
        f"| pairwise: a right sample above a wrong one of its problem | {_pct(report['pairwise_accuracy_min'])} |",
        f"| best of {data['k']} by min score | {_pct(pick['best_of_k'])} |",
        f"| majority vote of {data['k']} | {_pct(base['majority_vote'])} |",
        f"| mean sample / pass@{data['k']} | {_pct(base['mean_sample_acc'])} / {_pct(pass_k)} |",
        "",
    ]


def render_card(folder: Path, report: dict[str, Any] | None) -> str:
    """The model card: what it is, its input, how it was trained and reproduced, what it measured."""
    train = json.loads((folder / "training_config.json").read_text())
    sidecar = read_sidecar(folder).as_dict()
    args, final = train["args"], train.get("metrics", {})
    lines = [
        "# Generative process reward model",
        "",
        "A causal LM trained by `ponder train genprm` to write the gold reasoning steps of arithmetic problems, "
        f"reading every number in the order `{sidecar['number_order']}` (`reversed`: least significant digit first). "
        "Served as "
        "a step verifier (`ponder serve --verifier prm=THIS_FOLDER`): a step's score is the probability the model "
        "gives the step and its separator, as written, after the question and the steps before it. It reads the "
        "question and the steps as text, nothing else.",
        "",
        "## Format",
        "",
        f"- `ponder.json`: `{json.dumps(sidecar)}`",
        "- Input: the chat template over the question (numbers in the model's view), `<think>`, then every step in "
        "the same view followed by `\\n` (`ponder.verifiers.generative_prm.GenerativePRM.features`). A finished "
        "solution's answer is read too, as one more item: the probability of `</think>`, the answer and the end of "
        "the turn after the last step, which catches a solution that stops a step early or closes with a wrong "
        "answer (off with the spec option `answer=off`). The measurements below score the steps alone.",
        f"- {train['parameters']:,} parameters ({args['num_layers']} layers, hidden {args['hidden_size']}).",
        "",
        "## Training",
        "",
        f"{train['steps']} steps of TRL's `SFTTrainer` on {train['data'].get('train', {}).get('count', '?')} generated "
        f"problems, levels round-robin over `{args['levels']}`; mean training loss {final.get('train_loss', 0):.4f}, "
        f"final validation loss {final.get('eval_loss', 0):.4f}; {train['seconds']['total'] / 60:.1f} min on "
        f"{train['threads']} CPU threads.",
        "",
        "```",
        "OMP_WAIT_POLICY=PASSIVE " + train["command"],
        "```",
        "",
    ]
    return "\n".join(lines + (_measured(report) if report else []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ponder.training.genprm_card", description=__doc__)
    parser.add_argument("folder")
    parser.add_argument("--policy", default=None, help="Policy whose samples it is measured on (default: bundled).")
    parser.add_argument("--count", type=int, default=200, help="Validation problems (40 per level by default).")
    parser.add_argument("--k", type=int, default=16, help="Samples per problem.")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--engine", default="vllm", choices=("vllm", "hf"))
    parser.add_argument("--cache", default=None, help="JSONL cache of the samples (build/samples/...).")
    parser.add_argument("--card-only", action="store_true", help="Only re-render README.md from the saved JSON.")
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    report = json.loads((folder / "eval.json").read_text()) if (folder / "eval.json").is_file() else None
    if not args.card_only:
        from ponder.core.sidecar import default_model
        from ponder.tasks import ALL_LEVELS
        from ponder.training.samples import collect_samples

        policy = args.policy or default_model()
        levels = list(ALL_LEVELS)
        samples = collect_samples(
            policy, split="validation", count=args.count, levels=levels, k=args.k, temperature=args.temperature,
            engine=args.engine, cache=args.cache,
        )  # fmt: skip
        data = {"policy": str(policy), "split": "validation", "problems": args.count, "k": args.k}
        report = measure(folder, samples, {**data, "temperature": args.temperature, "levels": levels})
    (folder / "README.md").write_text(render_card(folder, report))
    print(folder / "README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
