"""Test helpers: an app over the fake engine, and SSE parsing."""

from __future__ import annotations

import asyncio
import json

import httpx
from fastapi import FastAPI

from ponder.bench.overhead import serve_in_process
from ponder.server.app import attach, create_app
from ponder.server.settings import ServerSettings
from ponder.testing import FakeEngine


def fake_app(
    engine: FakeEngine | None = None, settings: ServerSettings | None = None, verifiers=None
) -> tuple[FastAPI, FakeEngine]:
    """The real app with the fake engine (and optionally a ``VerifierSet``) attached (no lifespan needed)."""
    engine = engine or FakeEngine()
    settings = settings or ServerSettings()
    app = create_app(settings, engine=engine)
    attach(app, settings, engine, kind="fake", verifiers=verifiers)
    return app, engine


def client(app: FastAPI, **kwargs) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://ponder", **kwargs
    )


def sse_events(body: str) -> list:
    """The ``data:`` payloads of an SSE body, JSON-decoded, with ``[DONE]`` kept as the string."""
    events = []
    for block in body.split("\n\n"):
        if not block.strip():
            continue
        assert block.startswith("data: "), block
        payload = block[len("data: ") :]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


live = serve_in_process  # the app on a real uvicorn server in this loop; yields its base URL


async def wait_until(predicate, timeout: float = 3.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()
