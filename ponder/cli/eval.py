"""The ``ponder eval`` flags and entry point: problems, runs, target, then run, grade and report."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from ponder.eval.specs import SpecError, build_runs

EPILOG = """\
runs:
  flags such as --strategy / --temperature / --budget-samples set the request of every run;
  --run NAME:key=value,key=value adds a run on top of them (repeatable; values are JSON or text,
  keys are request fields, budget.max_samples / strategy_options.k for nested ones, body.FIELD for
  anything else); --sweep key=v1,v2,... multiplies every run by those values (repeatable: product);
  --runs-file FILE takes {"defaults": {...}, "sweep": {...}, "runs": [{"name": ..., ...}]} (JSON or YAML).

examples:
  ponder eval --engine hf --count 10 --temperature 0 --out out/greedy
  ponder eval --base-url http://127.0.0.1:8000/v1 --run greedy:temperature=0 --run sampled:temperature=0.8 --out out/b
  ponder eval --strategy best_of_n --verifier orm --sweep budget.max_samples=1,4,16,64 --out out/bon
"""


def _levels(text: str) -> list[int]:
    try:
        levels = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"levels must be comma-separated integers, got {text!r}") from None
    if not levels:
        raise argparse.ArgumentTypeError("no levels given")
    return list(dict.fromkeys(levels))  # a repeated level would weight it and break "per level"


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ponder.engines.factory import ENGINE_KINDS
    from ponder.tasks.phrasings import WORDINGS

    p = sub.add_parser(
        "eval",
        help="Measure accuracy against tokens through the API, per run and difficulty level.",
        description="Send held-out arithmetic problems through the OpenAI API (a running server, or the app built "
        "in this process), grade the answers with reasoning-gym, and write per-problem JSONL, summary.md, "
        "summary.json and an accuracy-vs-tokens plot.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("problems")
    g.add_argument("--task", choices=("chain_sum", "products", "both"), default="both")
    g.add_argument("--levels", type=_levels, default=[1, 2, 3, 4, 5], help="Comma-separated (default: 1,2,3,4,5).")
    g.add_argument("--split", choices=("test", "validation"), default="test")
    g.add_argument(
        "--count",
        type=int,
        default=20,
        help="Problems PER LEVEL (default: %(default)s); levels round-robin, tasks alternating within a level, "
        "the same problems as ponder.training.measure with count x levels.",
    )
    g.add_argument("--offset", type=int, default=0, help="Skip this many problems of the split first.")
    g.add_argument(
        "--wording",
        choices=WORDINGS,
        default="template",
        help="How the problems are asked: reasoning-gym's template, a question wording no bundled model was trained "
        "on ('What do you get for 12+7?'), or that wording with an instruction after it ('Keep it short.').",
    )

    t = p.add_argument_group("target (a running server with --base-url, else the app in this process)")
    t.add_argument("--base-url", default=None, help="e.g. http://127.0.0.1:8000/v1")
    t.add_argument("--api-key", default=os.environ.get("PONDER_API_KEY"), help="Bearer key (default $PONDER_API_KEY).")
    t.add_argument("--model-name", default=None, help="The 'model' field sent (default: the first listed).")
    t.add_argument("--model", default=None, help="In process: model folder (default: the bundled policy).")
    t.add_argument("--engine", choices=ENGINE_KINDS, default="auto", help="In process, as in ponder serve.")
    t.add_argument("--upstream", default=None, help="In process with --engine openai: the upstream base URL.")
    t.add_argument("--gpu-memory-utilization", type=float, default=None)
    t.add_argument("--max-model-len", type=int, default=None)
    t.add_argument("--dtype", default="auto")
    t.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=None)
    t.add_argument("--block-size", type=int, default=None, help="In process, vllm engine: KV-cache block size.")
    t.add_argument(
        "--load-verifier",
        action="append",
        default=[],
        metavar="NAME=PATH[:KIND]",
        help="In process: load this verifier besides the bundled ones, as ponder serve --verifier (repeatable).",
    )
    t.add_argument(
        "--router",
        default=None,
        metavar="FILE",
        help="In process: the learned router reasoning_effort auto follows, as ponder serve --router "
        "(default: the bundled one; 'none': compute_optimal's fixed thresholds).",
    )
    t.add_argument("--device", default="auto", help="hf engine: cpu, cuda, or auto.")
    t.add_argument("--engine-seed", type=int, default=0, help="In process: the engine-wide seed.")
    t.add_argument("--timeout", type=float, default=600.0, help="Seconds per request (default: %(default)s).")
    t.add_argument("--max-retries", type=int, default=0, help="SDK retries per request (default: %(default)s).")

    r = p.add_argument_group("request of every run (any is overridden per run)")
    r.add_argument("--strategy", default=None)
    r.add_argument("--strategy-options", type=_json_object, default=None, metavar="JSON")
    r.add_argument("--verifier", default=None)
    r.add_argument("--reasoning-effort", default=None)
    r.add_argument("--thinking-level", default=None)
    r.add_argument("--thinking-budget", type=int, default=None)
    r.add_argument("--budget-samples", type=int, default=None, help="budget.max_samples")
    r.add_argument("--budget-tokens", type=int, default=None, help="budget.max_tokens")
    r.add_argument("--budget-seconds", type=float, default=None, help="budget.max_seconds")
    r.add_argument("--temperature", type=float, default=None)
    r.add_argument("--top-p", type=float, default=None)
    r.add_argument("--max-tokens", type=int, default=160, help="Default: %(default)s (as ponder.training.measure).")
    r.add_argument("--n", type=int, default=None)
    r.add_argument("--seed", type=int, default=None, help="Per-request seed.")
    r.add_argument("--return-trace", action="store_true", default=None)

    s = p.add_argument_group("runs")
    s.add_argument("--run", action="append", default=[], metavar="NAME:key=value,...", help="Repeatable.")
    s.add_argument("--sweep", action="append", default=[], metavar="key=v1,v2,...", help="Repeatable (product).")
    s.add_argument("--runs-file", default=None, help="JSON or YAML runs file.")
    s.add_argument(
        "--only", default=None, metavar="NAME,...", help="Run only these runs or series (e.g. of a runs file)."
    )
    s.add_argument("--name", default="default", help="Name of the run when no --run/--runs-file is given.")

    o = p.add_argument_group("execution and output")
    o.add_argument("--concurrency", type=int, default=8, help="Requests in flight (default: %(default)s).")
    o.add_argument("--warmup", type=int, default=1, help="Untimed requests before the first run (default: 1).")
    o.add_argument("--out", required=True, help="Output folder.")
    o.add_argument("--no-progress", action="store_true", help="No progress bars.")
    o.add_argument("--no-plot", action="store_true", help="No plots.")
    p.set_defaults(func=evaluate)


def request_defaults(args: argparse.Namespace) -> dict[str, Any]:
    """The request fields the flags set, as a run-spec body."""
    pairs = {
        "strategy": args.strategy,
        "strategy_options": args.strategy_options,
        "verifier": args.verifier,
        "reasoning_effort": args.reasoning_effort,
        "thinking_level": args.thinking_level,
        "thinking_budget": args.thinking_budget,
        "budget.max_samples": args.budget_samples,
        "budget.max_tokens": args.budget_tokens,
        "budget.max_seconds": args.budget_seconds,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "max_tokens": args.max_tokens,
        "n": args.n,
        "seed": args.seed,
        "return_trace": args.return_trace,
    }
    return {k: v for k, v in pairs.items() if v is not None}


def target_from_args(args: argparse.Namespace):
    from ponder.eval.runner import Target

    if args.base_url:
        if args.model or args.upstream:
            raise SpecError("--base-url talks to a running server; --model/--upstream are for the in-process mode")
        return Target(
            base_url=args.base_url,
            api_key=args.api_key,
            model_name=args.model_name,
            timeout=args.timeout,
            max_retries=args.max_retries,
        )
    from ponder.core.sidecar import default_model
    from ponder.engines.settings import EngineSettings
    from ponder.server.settings import Limits, ServerSettings

    model = args.model
    if args.engine == "openai":
        if not args.upstream:
            raise SpecError("--engine openai needs --upstream URL")
    elif not model:
        model = default_model()
        if not model:
            raise SpecError("no bundled model under ponder/models/policy; pass --model DIR or --base-url URL")
    if model and args.engine != "openai" and not Path(model).exists() and "/" not in model:
        raise SpecError(f"--model {model!r}: no such folder")
    engine = EngineSettings(
        kind=args.engine,
        model=model or "",
        upstream=args.upstream,
        gpu_memory_utilization=args.gpu_memory_utilization,
        max_model_len=args.max_model_len,
        dtype=args.dtype,
        enforce_eager=args.enforce_eager,
        seed=args.engine_seed,
        device=args.device,
        block_size=args.block_size,
    )
    limits = Limits(max_concurrency=max(Limits().max_concurrency, args.concurrency))
    settings = ServerSettings(
        engine=engine,
        limits=limits,
        api_key=None,
        verifiers=tuple(args.load_verifier),
        router=getattr(args, "router", None),
    )
    return Target(settings=settings, model_name=args.model_name, timeout=args.timeout, max_retries=args.max_retries)


def problems_from_args(args: argparse.Namespace) -> list:
    from ponder.tasks import generate_problems
    from ponder.tasks.phrasings import worded

    tasks = ("chain_sum", "products") if args.task == "both" else (args.task,)
    if args.count < 1:
        raise SpecError("--count must be at least 1")
    if args.offset < 0:
        raise SpecError("--offset must be >= 0")
    try:
        problems = generate_problems(args.split, args.count * len(args.levels), args.levels, tasks, offset=args.offset)
        return worded(problems, args.wording)
    except ValueError as exc:
        raise SpecError(str(exc)) from None


def command_line(args: argparse.Namespace) -> str:
    argv = getattr(args, "argv", None)
    if argv is None:
        argv = sys.argv[sys.argv.index("eval") :] if "eval" in sys.argv else sys.argv[1:]
    return "ponder " + shlex.join(argv)


async def _evaluate(args: argparse.Namespace, runs, problems, target, out_dir: Path) -> dict[str, Any]:
    from ponder.eval.report import summarize_run, write_rows
    from ponder.eval.runner import open_client, resolve_model, run_one, warm_up

    results = []
    async with open_client(target) as client:
        model = await resolve_model(client, target.model_name)
        await warm_up(client, model, problems, args.warmup, args.max_tokens)
        for run in runs:
            rows, wall = await run_one(client, model, problems, run, args.concurrency, progress=not args.no_progress)
            write_rows(out_dir / f"{run.name}.jsonl", rows)
            results.append(summarize_run(run, rows, wall))
            o = results[-1]["overall"]
            print(
                f"{run.name}: accuracy {o['accuracy']:.1%} ({o['correct']}/{o['n']}), "
                f"mean tokens {o['mean_completion_tokens'] or 0:.1f}, errors {o['errors']}, {wall:.1f}s",
                file=sys.stderr,
            )
    where = target.base_url or f"in process ({target.settings.engine.kind} engine)"
    return {"model": model, "target": where, "runs": results}


def evaluate(args: argparse.Namespace) -> int:
    from ponder.eval.report import write_summary

    try:
        if args.concurrency < 1:
            raise SpecError("--concurrency must be at least 1")
        runs = build_runs(request_defaults(args), args.run, args.sweep, args.runs_file, args.name)
        if args.only:
            wanted = {name.strip() for name in args.only.split(",") if name.strip()}
            unknown = wanted - {r.series for r in runs} - {r.name for r in runs}
            if unknown:
                raise SpecError(f"--only: no run or series named {', '.join(sorted(unknown))}")
            runs = [r for r in runs if r.series in wanted or r.name in wanted]
        problems = problems_from_args(args)
        target = target_from_args(args)
    except SpecError as exc:
        print(f"ponder eval: error: {exc}", file=sys.stderr)
        return 2
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.UTC)
    try:
        result = asyncio.run(_evaluate(args, runs, problems, target, out_dir))
    except Exception as exc:  # a server that cannot be reached or an engine that does not start
        print(f"ponder eval: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    levels = sorted(set(args.levels))
    summary = {
        "command": command_line(args),
        "date": f"{started:%Y-%m-%d %H:%M} UTC",
        "target": result["target"],
        "model": result["model"],
        "problems": {
            "split": args.split,
            "levels": levels,
            "tasks": sorted({p.task for p in problems}),
            "per_level": args.count,
            "offset": args.offset,
            "total": len(problems),
        },
        "runs": result["runs"],
    }
    for path in write_summary(summary, out_dir, plots=not args.no_plot):
        print(f"wrote {path}", file=sys.stderr)
    print((out_dir / "summary.md").read_text())
    return 0


def main(argv: list[str] | None = None) -> int:
    """``ponder eval ARGS`` as a function (tests, scripts); ``argv`` excludes ``eval``."""
    parser = argparse.ArgumentParser(prog="ponder")
    add_parser(parser.add_subparsers(dest="command", required=True))
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(["eval", *argv])
    args.argv = ["eval", *argv]
    return args.func(args)
