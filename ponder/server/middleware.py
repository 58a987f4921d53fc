"""Pure-ASGI middleware (API key, body size) and the disconnect-aware helpers the routes use."""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ponder.server.errors import error_body

T = TypeVar("T")
OPEN_PATHS = frozenset({"/health"})
_CLIENT_REQUEST_ID = re.compile(rb"[\x21-\x7e]{1,64}")  # a client's own x-request-id, echoed when it looks sane


async def _send_error(send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps(error_body(message, status)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


class APIKeyMiddleware:
    """Every path but ``/health`` needs ``Authorization: Bearer <key>`` when a key is set.

    HTTP Basic credentials whose password is the key pass too: a browser asks for them on ``/playground`` and then
    sends them with the page's own API calls.
    """

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self._key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        auth = dict(scope["headers"]).get(b"authorization", b"")
        if not self._authorized(auth):
            page = scope["path"].startswith("/playground")  # a browser: let it ask for the key
            challenge = b'Basic realm="Ponder", charset="UTF-8"' if page else b"Bearer"
            return await _send_error(
                send,
                401,
                "Invalid or missing API key: send 'Authorization: Bearer <key>'.",
                [(b"www-authenticate", challenge)],
            )
        return await self.app(scope, receive, send)

    def _authorized(self, auth: bytes) -> bool:
        scheme, _, token = auth.partition(b" ")
        if scheme.lower() == b"basic":
            try:
                token = base64.b64decode(token.strip(), validate=True).partition(b":")[2]  # any user name
            except ValueError:
                return False
        elif scheme.lower() != b"bearer":
            return False
        return hmac.compare_digest(token.strip(), self._key)


class RequestIdMiddleware:
    """Every response carries ``x-request-id``: the client's own when it sent a sane one, else a new one.

    The id is also put in ``scope["state"]["request_id"]`` for whoever logs the request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        sent = dict(scope["headers"]).get(b"x-request-id", b"")
        request_id = sent if _CLIENT_REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex.encode()
        scope.setdefault("state", {})["request_id"] = request_id.decode()

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", request_id)]}
            await send(message)

        return await self.app(scope, receive, send_with_id)


class BodyLimitMiddleware:
    """Refuses request bodies over ``max_bytes`` with 413, by Content-Length or while reading a chunked body."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await _send_error(send, 413, f"Request body is larger than {self.max_bytes} bytes.")
        seen = 0

        async def counting_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge()
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _BodyTooLarge:
            await _send_error(send, 413, f"Request body is larger than {self.max_bytes} bytes.")


class _BodyTooLarge(Exception):
    pass


class ClientDisconnected(Exception):
    """The client went away before the response was ready."""


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``, cancelling it (and so its engine requests) if the client disconnects first."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise ClientDisconnected()
    return task.result()


class DisconnectAwareStreamingResponse(StreamingResponse):
    """Streams while listening for the client's disconnect, whatever the ASGI spec version.

    Starlette only notices a gone client on the next send under ASGI 2.4, but a search that
    thinks for seconds between events must stop at once. The stream is cancelled with one
    plain ``Task.cancel()`` (not an anyio cancel scope, which would cancel every later await
    too) so the generators' clean-up, aborting engine requests, can still await. However it
    ends, even before the first event was sent, the events are closed and ``on_close`` is called.
    """

    def __init__(self, content: AsyncIterator[str], *args: Any, on_close: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, *args, **kwargs)
        self._events = content
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._stream(scope, receive, send)
        finally:
            try:
                await self._events.aclose()  # type: ignore[attr-defined]  # a no-op once it has ended
            finally:
                self._on_close()

    async def _stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        streaming = asyncio.ensure_future(self.stream_response(send))
        watcher = asyncio.ensure_future(self.listen_for_disconnect(receive))
        try:
            await asyncio.wait({streaming, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            if not streaming.done():
                streaming.cancel()
            try:
                await streaming
            except (asyncio.CancelledError, OSError):
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
