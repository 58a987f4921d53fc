"""``ponder serve``: the flags, the settings they make, and the checks that run before the engine starts."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from ponder.core.sidecar import default_model
from ponder.engines.factory import ENGINE_KINDS
from ponder.engines.settings import EngineSettings
from ponder.server.settings import Limits, ServerSettings, SignatureSettings

log = logging.getLogger("ponder")

# Flags handed to the engine unchanged, under the names of their EngineSettings fields.
ENGINE_FLAGS = (
    "upstream",
    "upstream_api_key",
    "tensor_parallel_size",
    "gpu_memory_utilization",
    "max_model_len",
    "dtype",
    "enable_prefix_caching",
    "enforce_eager",
    "block_size",
    "seed",
    "device",
)


def _tiny_model_fallback() -> str:
    """Until a policy is bundled, serve a tiny random model built once into the cache."""
    from ponder.training.tiny_model import build_tiny_model

    path = Path(os.environ.get("PONDER_HOME", Path.home() / ".cache" / "ponder")) / "tiny-llama"
    if not (path / "config.json").exists():
        log.warning("no bundled model under ponder/models/ yet: building a tiny random model at %s", path)
        build_tiny_model(path)
    return str(path)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="Serve the OpenAI-compatible API.", description="Serve the OpenAI-compatible API.")
    p.add_argument("--model", default=None, help="Model folder or hub id (default: the bundled policy).")
    p.add_argument("--served-model-name", action="append", default=[], help="Name(s) clients use; default: --model.")
    p.add_argument("--engine", choices=ENGINE_KINDS, default="auto", help="auto: vllm if importable, else hf.")
    p.add_argument("--upstream", default=None, help="Base URL of an OpenAI-compatible server (--engine openai).")
    p.add_argument("--upstream-api-key", default=os.environ.get("PONDER_UPSTREAM_API_KEY"))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=os.environ.get("PONDER_API_KEY"), help="Require 'Authorization: Bearer KEY'.")
    p.add_argument("--tensor-parallel-size", type=int, default=1)
    p.add_argument("--gpu-memory-utilization", type=float, default=None)
    p.add_argument("--max-model-len", type=int, default=None)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--enable-prefix-caching", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument(
        "--block-size",
        type=int,
        default=None,
        help="vLLM KV-cache block size; prefix-cache hits come in whole blocks (CPU build: a multiple of 32).",
    )
    p.add_argument("--device", default="auto", help="hf engine: cpu, cuda, or auto.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--reasoning-parser",
        choices=("think", "none"),
        default="think",
        help="Split <think>...</think> into reasoning_content.",
    )
    p.add_argument(
        "--verifier",
        action="append",
        default=[],
        metavar="NAME=PATH[:KIND]",
        help="Load a verifier (repeatable), e.g. prm=ponder/models/prm, orm=/path:orm, safety=spec.yaml:policy.",
    )
    p.add_argument(
        "--default-verifiers",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Load the bundled ORM and PRM (ponder/models/orm, ponder/models/prm) and the built-in math_rule "
        "and llm_judge.",
    )
    p.add_argument(
        "--default-verifier",
        default=None,
        metavar="NAME",
        help="Verifier of requests that name none (default: the one the model's ponder.json recommends, else prm, "
        "else orm, else math_rule).",
    )
    p.add_argument(
        "--model-sidecar",
        default=None,
        metavar="PATH",
        help="The served model's ponder.json (or a folder holding it) when --model is not a local folder, as with "
        "--engine openai: its recommended verifier, think tags and step format then apply as in process.",
    )
    p.add_argument(
        "--strategy-plugin",
        action="append",
        default=[],
        metavar="MODULE:CLASS",
        help="Register a third-party strategy class (repeatable); installed packages can instead declare a "
        "'ponder.strategies' entry point.",
    )
    p.add_argument(
        "--default-strategy",
        default=None,
        help="Strategy run by reasoning_effort low/medium/high (default: best_of_n with a verifier, "
        "else self_consistency).",
    )
    p.add_argument(
        "--spec",
        default=None,
        metavar="FILE",
        help="A model spec (YAML/JSON, or Markdown with YAML front matter): rules in prose the model reads as a "
        "system turn, with machine checks and an LLM judge that filter every answer; when all candidates "
        "violate it, its refusal with finish_reason content_filter (docs/spec.md).",
    )
    limits = Limits()
    p.add_argument(
        "--max-concurrency",
        type=int,
        default=limits.max_concurrency,
        help="Requests in flight; more get 503 with Retry-After.",
    )
    p.add_argument("--max-n", type=int, default=limits.max_n)
    p.add_argument(
        "--max-prompts", type=int, default=limits.max_prompts, help="Prompts in one /v1/completions request."
    )
    p.add_argument("--max-body-bytes", type=int, default=limits.max_body_bytes)
    p.add_argument("--max-samples", type=int, default=limits.max_samples, help="Ceiling of a request's budget.")
    p.add_argument("--max-budget-tokens", type=int, default=limits.max_tokens, help="Ceiling of a request's budget.")
    p.add_argument("--max-seconds", type=float, default=limits.max_seconds, help="Ceiling of a request's budget.")
    p.add_argument("--log-level", default="info")
    p.add_argument(
        "--tool-call-parser",
        default=None,
        metavar="NAME",
        help="Read tool calls in the model's own syntax with this vLLM tool parser (e.g. hermes, llama3_json), "
        "so tool_choice 'auto' works; forced calls (required, a named function) need no parser.",
    )
    p.add_argument(
        "--playground",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Serve the playground web page at /playground (behind --api-key when one is set).",
    )
    add_state_flags(p)
    p.set_defaults(func=serve)


def add_state_flags(p: argparse.ArgumentParser) -> None:
    """Thought signatures and the effort policy."""
    signatures = SignatureSettings()
    env_keys = [k.strip() for k in os.environ.get("PONDER_SIGNATURE_KEYS", "").split(",") if k.strip()]
    p.add_argument(
        "--signature-key",
        action="append",
        default=None,
        metavar="SECRET",
        help="Secret that seals thought signatures (repeatable, for rotation: the first signs, all verify). "
        "Default: env PONDER_SIGNATURE_KEYS (comma-separated), else a random per-process key.",
    )
    p.set_defaults(signature_key_env=env_keys)
    p.add_argument(
        "--signature-ttl", type=float, default=signatures.ttl_seconds, help="Seconds a thought signature stays valid."
    )
    p.add_argument(
        "--signature-max-bytes",
        type=int,
        default=signatures.max_bytes,
        help="Largest thought signature issued or accepted (reasoning is cut to fit).",
    )
    p.add_argument(
        "--signature-reasoning",
        choices=("keep", "drop"),
        default=signatures.reasoning,
        help="keep: a signed turn's reasoning goes back into the model's context; drop: only its answer does.",
    )
    p.add_argument(
        "--effort-policy",
        default=None,
        metavar="FILE",
        help="JSON or YAML table from effort levels to strategy, verifier, samples and tokens "
        "(default: the bundled ponder/server/effort_policy.json).",
    )
    p.add_argument(
        "--router",
        default=None,
        metavar="FILE",
        help="The learned router compute_optimal (reasoning_effort auto) follows, from `ponder train router`; "
        "'none': its fixed thresholds (default: the bundled ponder/server/router.json).",
    )


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    model = args.model
    served = tuple(args.served_model_name)
    if model is None and args.engine != "openai":
        model = default_model()
        served = served or (("policy",) if model else ())  # clients say "policy", not a local path
        model = model or _tiny_model_fallback()
    passed = {name: getattr(args, name) for name in ENGINE_FLAGS}
    engine = EngineSettings(kind=args.engine, model=model or "", served_model_names=served, **passed)
    limits = Limits(
        max_concurrency=args.max_concurrency,
        max_n=args.max_n,
        max_prompts=args.max_prompts,
        max_body_bytes=args.max_body_bytes,
        max_samples=args.max_samples,
        max_tokens=args.max_budget_tokens,
        max_seconds=args.max_seconds,
    )
    return ServerSettings(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        engine=engine,
        limits=limits,
        reasoning_parser=args.reasoning_parser,
        verifiers=tuple(args.verifier),
        default_verifiers=args.default_verifiers,
        default_strategy=args.default_strategy,
        default_verifier=args.default_verifier,
        model_sidecar=args.model_sidecar,
        log_level=args.log_level,
        tool_call_parser=args.tool_call_parser,
        playground=args.playground,
        signatures=SignatureSettings(
            keys=tuple(args.signature_key or getattr(args, "signature_key_env", ())),
            ttl_seconds=args.signature_ttl,
            max_bytes=args.signature_max_bytes,
            reasoning=args.signature_reasoning,
        ),
        effort_policy=args.effort_policy,
        router=getattr(args, "router", None),
        spec=getattr(args, "spec", None),
    )


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ponder.server.app import create_app

    if args.engine == "openai" and not args.upstream:
        raise SystemExit("ponder serve: --engine openai needs --upstream URL")
    check_extensions(args)
    check_model_sidecar(args.model_sidecar)
    settings = settings_from_args(args)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=5,
    )
    return 0


def check_extensions(args: argparse.Namespace) -> None:
    """Refuse bad ``--verifier`` / ``--strategy-plugin`` / ``--default-strategy`` flags before the engine starts."""
    from ponder.strategies import registry
    from ponder.verifiers.hf import VerifierLoadError
    from ponder.verifiers.registry import BUILTINS, check_specs

    try:
        specs = check_specs(args.verifier)
    except VerifierLoadError as exc:
        raise SystemExit(f"ponder serve: {exc}") from None
    for path in args.strategy_plugin:
        try:
            registry.load_path(path)
        except (ImportError, AttributeError, ValueError, TypeError) as exc:
            raise SystemExit(f"ponder serve: --strategy-plugin {path!r}: {exc}") from None
    loadable = {s.name for s in specs} | {"prm", "orm", *BUILTINS}  # prm, orm: the bundled models' names
    if getattr(args, "default_verifier", None) and args.default_verifier not in loadable:
        raise SystemExit(
            f"ponder serve: --default-verifier {args.default_verifier!r} is neither a --verifier name nor a built-in"
        )
    check_tool_parser(getattr(args, "tool_call_parser", None), getattr(args, "engine", "auto"))
    if args.default_strategy and args.default_strategy not in registry.names():
        valid = ", ".join(registry.names())
        raise SystemExit(f"ponder serve: --default-strategy {args.default_strategy!r} is unknown; valid: {valid}")
    check_state_flags(args, loadable)
    check_spec(getattr(args, "spec", None), {s.name for s in specs})


def check_spec(path: str | None, verifier_names: set[str]) -> None:
    """Refuse a ``--spec`` file that is missing or malformed, naming the file and what is wrong."""
    if path is None:
        return
    from ponder.verifiers.spec import SpecError, load_spec

    if "spec" in verifier_names:
        raise SystemExit("ponder serve: --spec loads as the verifier 'spec'; rename the --verifier called spec")
    try:
        load_spec(path)
    except SpecError as exc:
        raise SystemExit(f"ponder serve: --spec {exc}") from None


def check_state_flags(args: argparse.Namespace, verifiers: set[str]) -> None:
    """Refuse an effort policy that cannot serve, and signature settings that cannot work, before the engine."""
    from ponder.server.effort_policy import EffortPolicyError, load_policy
    from ponder.strategies import registry

    path = getattr(args, "effort_policy", None)
    try:
        policy = load_policy(path)  # its errors name the file
    except EffortPolicyError as exc:
        raise SystemExit(f"ponder serve: --effort-policy {exc}") from None
    try:
        policy.check(registry.names(), verifiers)
    except EffortPolicyError as exc:
        raise SystemExit(f"ponder serve: --effort-policy {path or 'bundled policy'}: {exc}") from None
    check_router_flag(getattr(args, "router", None))
    if getattr(args, "signature_ttl", 1) <= 0:
        raise SystemExit("ponder serve: --signature-ttl must be a positive number of seconds")
    if getattr(args, "signature_max_bytes", 4096) < 1024:
        raise SystemExit("ponder serve: --signature-max-bytes must be at least 1024")


def check_router_flag(path: str | None) -> None:
    """Refuse a ``--router`` file that is missing, malformed, of another version, or naming unknown strategies."""
    from ponder.server.router_policy import load_server_router
    from ponder.strategies.router import RouterFileError

    try:
        load_server_router(path)
    except RouterFileError as exc:
        raise SystemExit(f"ponder serve: --router {exc}") from None


def check_model_sidecar(path: str | None) -> None:
    """Refuse a ``--model-sidecar`` that is missing or not a valid ``ponder.json``."""
    from ponder.core.sidecar import SIDECAR, SidecarError, read_sidecar

    if path is None:
        return
    if not (Path(path).is_file() or (Path(path) / SIDECAR).is_file()):
        raise SystemExit(f"ponder serve: --model-sidecar {path!r}: no such file, nor a folder with {SIDECAR}")
    try:
        read_sidecar(path)
    except SidecarError as exc:
        raise SystemExit(f"ponder serve: --model-sidecar: {exc}") from None


def check_tool_parser(name: str | None, engine: str = "auto") -> None:
    """Refuse an unknown ``--tool-call-parser``, or one without the model's tokenizer, before the engine starts."""
    if name is None:
        return
    if engine == "openai":
        raise SystemExit(
            "ponder serve: --tool-call-parser needs the model's tokenizer, which --engine openai does not load; "
            "forced tool calls (tool_choice 'required' or a named function) work without it"
        )
    from ponder.engines.vllm_tools import tool_parser_names

    known = tool_parser_names()
    if not known:
        raise SystemExit("ponder serve: --tool-call-parser needs vLLM's tool parsers (install ponder[cpu] or [gpu])")
    if name not in known:
        raise SystemExit(f"ponder serve: --tool-call-parser {name!r} is unknown; valid: {', '.join(known)}")
