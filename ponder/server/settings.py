"""Server settings: the `ponder serve` flags, fixed at start-up and never written per request."""

from __future__ import annotations

from dataclasses import dataclass, field

from ponder.engines.settings import EngineSettings


@dataclass(frozen=True)
class Limits:
    """What one request, and the server as a whole, may ask for."""

    max_concurrency: int = 64
    max_n: int = 32
    max_prompts: int = 256  # prompts in one /v1/completions request
    max_stop: int = 16
    max_body_bytes: int = 4 * 1024 * 1024
    max_samples: int = 64
    max_tokens: int = 65536
    max_seconds: float = 300.0


@dataclass(frozen=True)
class SignatureSettings:
    """Thought signatures: the keys (the first signs, all verify), their lifetime and size, and the restore policy."""

    keys: tuple[str, ...] = ()  # none: a random per-process key (signatures die with the process)
    ttl_seconds: float = 86400.0
    max_bytes: int = 65536
    reasoning: str = "keep"  # keep | drop: put a signed turn's reasoning back into the context, or not


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    engine: EngineSettings = field(default_factory=EngineSettings)
    limits: Limits = field(default_factory=Limits)
    reasoning_parser: str = "think"  # think | none
    verifiers: tuple[str, ...] = ()  # --verifier NAME=PATH[:KIND] specs, loaded besides the bundled defaults
    default_verifiers: bool = True  # load the bundled ORM/PRM and the built-in rule and judge verifiers
    default_verifier: str | None = None  # what a request without `verifier` gets; None: the model's sidecar, else prm
    # --model-sidecar: the served model's ponder.json (or its folder) when --model is not a local folder (upstream)
    model_sidecar: str | None = None
    default_strategy: str | None = None  # what reasoning_effort low/medium/high runs; None: by verifiers loaded
    log_level: str = "info"
    tool_call_parser: str | None = None  # --tool-call-parser: vLLM's parser of the model's tool-call syntax
    playground: bool = True  # serve /playground
    signatures: SignatureSettings = field(default_factory=SignatureSettings)
    effort_policy: str | None = None  # --effort-policy FILE; None: the bundled ponder/server/effort_policy.json
    router: str | None = None  # --router FILE (or "none"); None: the bundled ponder/server/router.json
    spec: str | None = None  # --spec FILE: a model spec the model reads and every answer is filtered by
