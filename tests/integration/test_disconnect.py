"""A client that disconnects cancels its work: a real uvicorn server over the fake engine."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest

from ponder.testing import FakeEngine
from tests.helpers import fake_app, live, wait_until

BODY = {"model": "fake-model", "messages": [{"role": "user", "content": "go"}]}


@pytest.fixture
def slow_app():
    return fake_app(FakeEngine(lambda p, s, i: "tok " * 5000, token_delay=0.002))


async def test_stream_disconnect_cancels_engine_work(slow_app):
    app, engine = slow_app
    async with live(app) as url, httpx.AsyncClient(base_url=url) as client:
        async with client.stream("POST", "/v1/chat/completions", json={**BODY, "stream": True}) as resp:
            assert resp.status_code == 200
            lines = resp.aiter_lines()
            assert (await anext(lines)).startswith("data: ")
            assert engine.active == 1
        # the response is closed here, mid-stream
        assert await wait_until(lambda: engine.active == 0)
        assert await wait_until(lambda: app.state.admission.in_flight == 0)
        metrics = (await client.get("/metrics")).text
    assert 'ponder_requests_cancelled_total{route="/v1/chat/completions"} 1.0' in metrics
    assert 'status="499"' in metrics


async def test_non_streaming_disconnect_cancels_engine_work(slow_app):
    app, engine = slow_app
    async with live(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            request = asyncio.create_task(client.post("/v1/chat/completions", json=BODY))
            assert await wait_until(lambda: engine.active == 1)
            request.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await request
        assert await wait_until(lambda: engine.active == 0)
        assert await wait_until(lambda: app.state.admission.in_flight == 0)
        async with httpx.AsyncClient(base_url=url) as client:
            metrics = (await client.get("/metrics")).text
    assert 'ponder_requests_cancelled_total{route="/v1/chat/completions"} 1.0' in metrics


async def test_stream_disconnect_is_noticed_while_the_engine_is_silent():
    class Thinker(FakeEngine):
        """Sends one token, then thinks for a long time without sending anything."""

        async def stream(self, prompt, params, n=1):
            self.active += 1
            try:
                first = await anext(super().stream(prompt, params, n))
                yield first
                await asyncio.sleep(60)
            finally:
                self.active -= 1

    app, engine = fake_app(Thinker(lambda p, s, i: "a b"))
    async with live(app) as url, httpx.AsyncClient(base_url=url) as client:
        async with client.stream("POST", "/v1/chat/completions", json={**BODY, "stream": True}) as resp:
            lines = resp.aiter_lines()
            assert (await anext(lines)).startswith("data: ")
            assert await wait_until(lambda: engine.active >= 1)
        assert await wait_until(lambda: engine.active == 0, timeout=5)


async def test_a_stream_closed_by_its_consumer_counts_as_cancelled(slow_app):
    """When the send to a gone client fails first, the response closes the generator (GeneratorExit, not a cancel):
    it is still a cancelled request, and its engine work stops."""
    from ponder.server.protocol import ChatCompletionRequest

    app, engine = slow_app
    async with live(app) as url, httpx.AsyncClient(base_url=url) as client:
        service = app.state.chat
        events = await service.stream(ChatCompletionRequest(**{**BODY, "stream": True}))
        assert (await anext(events)).startswith("data: ")
        assert (await anext(events)).startswith("data: ")
        await events.aclose()
        assert await wait_until(lambda: engine.active == 0)
        metrics = (await client.get("/metrics")).text
    assert 'ponder_requests_cancelled_total{route="/v1/chat/completions"} 1.0' in metrics
