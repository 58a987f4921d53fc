"""Thin HTTP routes: parse, admit, hand to the service, frame the answer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic.json_schema import models_json_schema

from ponder.core.errors import OverloadedError
from ponder.core.protocols import Engine
from ponder.server.headers import ponder_header
from ponder.server.metrics import CONTENT_TYPE_LATEST
from ponder.server.middleware import ClientDisconnected, DisconnectAwareStreamingResponse, until_disconnect
from ponder.server.protocol import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionRequest,
    CompletionResponse,
    ErrorResponse,
    Health,
    ModelCard,
    ModelList,
    PonderFields,
)
from ponder.server.protocol_responses import ResponseObject, ResponsesRequest
from ponder.server.serving import CLIENT_CLOSED, Admission
from ponder.server.serving_chat import ChatService
from ponder.server.serving_completion import CompletionService

if TYPE_CHECKING:
    from ponder.verifiers.registry import VerifierSet

router = APIRouter()
# What the API answers, in /openapi.json (schemathesis checks every response against it): OpenAI's error shape for
# every refusal, and with stream: true, server-sent events instead of the JSON body.
ERRORS: dict[int | str, dict] = {
    status: {"model": ErrorResponse, "description": what}
    for status, what in (
        (400, "An invalid parameter (named in param), or a prompt longer than the context"),
        (401, "A missing or wrong API key (with --api-key)"),
        (404, "An unknown model"),
        (413, "A body over --max-body-bytes"),
        (503, "Past --max-concurrency (with Retry-After)"),
    )
}
# The Responses API's events are typed by their `event:` line; their payloads are described in its own module.
RESPONSES_STREAM = {
    "description": "JSON, or with stream: true the Responses API's server-sent events",
    "content": {"text/event-stream": {"schema": {"type": "object", "required": ["data"], "properties": {
        "data": {"type": "string"}, "event": {"type": "string"}}}}},
}  # fmt: skip


def sse(*chunks: str) -> dict[int | str, dict]:
    """The responses of a route that streams ``chunks`` (component names) as server-sent events with stream: true:
    each event's data is a chunk, an error, or ``[DONE]`` (OpenAPI 3.1: the schema describes one event)."""
    payload = {"anyOf": [{"$ref": f"#/components/schemas/{name}"} for name in (*chunks, "ErrorResponse")]}
    data = {"anyOf": [{"const": "[DONE]"}, {"contentMediaType": "application/json", "contentSchema": payload}]}
    event = {"type": "object", "required": ["data"], "properties": {"data": {"type": "string", **data}}}
    return {**ERRORS, 200: {"description": "JSON, or with stream: true server-sent events", "content": {
        "text/event-stream": {"schema": event}}}}  # fmt: skip


STREAM_CHUNKS = (ChatCompletionChunk, CompletionResponse, ErrorResponse)


def document_streams(app: FastAPI) -> None:
    """Put the stream chunks' schemas beside the routes' own in ``/openapi.json`` (the events refer to them)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            models = [(model, "serialization") for model in STREAM_CHUNKS]
            _, defs = models_json_schema(models, ref_template="#/components/schemas/{model}")
            for name, definition in defs.get("$defs", {}).items():
                schema.setdefault("components", {}).setdefault("schemas", {}).setdefault(name, definition)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


async def _serve(request: Request, service: ChatService | CompletionService, body: PonderFields) -> Response:
    admission: Admission = request.app.state.admission
    try:
        admission.enter()
    except OverloadedError:
        service.record_refusal(body, OverloadedError.status)
        raise
    try:
        if body.stream:
            events = await until_disconnect(request, service.stream(body))
        else:
            result = await until_disconnect(request, service.create(body))
    except ClientDisconnected:
        admission.leave()
        service.metrics.cancelled.labels(service.route).inc()
        return Response(status_code=CLIENT_CLOSED)
    except BaseException:
        admission.leave()
        raise
    if not body.stream:
        admission.leave()
        result.system_fingerprint = service.fingerprint
        # serialised by pydantic in one call, not walked by FastAPI's jsonable_encoder (~0.3 ms a response)
        headers = ponder_header(getattr(result, "ponder", None))
        return Response(result.model_dump_json(by_alias=True), media_type="application/json", headers=headers)
    return DisconnectAwareStreamingResponse(
        events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}, on_close=admission.leave
    )


@router.post("/v1/chat/completions", response_model=ChatCompletionResponse, responses=sse("ChatCompletionChunk"))
async def chat_completions(body: ChatCompletionRequest, request: Request):
    return await _serve(request, request.app.state.chat, body)


@router.post("/v1/completions", response_model=CompletionResponse, responses=sse("CompletionResponse"))
async def completions(body: CompletionRequest, request: Request):
    return await _serve(request, request.app.state.completions, body)


@router.post("/v1/responses", response_model=ResponseObject, responses={**ERRORS, 200: RESPONSES_STREAM})
async def responses(body: ResponsesRequest, request: Request):
    """The Responses API, stateless: reasoning state travels in the items' ``encrypted_content``."""
    return await _serve(request, request.app.state.responses, body)


@router.get("/v1/models", responses={401: ERRORS[401]})
async def models(request: Request) -> ModelList:
    engine: Engine = request.app.state.engine
    cards = [
        ModelCard(id=name, root=engine.model_id, max_model_len=engine.capabilities.max_model_len)
        for name in request.app.state.model_names
    ]
    return ModelList(data=cards)


@router.get("/health", response_model=Health, responses={503: {"model": Health, "description": "Not serving"}})
async def health(request: Request) -> Response:
    if getattr(request.app.state, "engine", None) is None:
        return JSONResponse({"status": "unavailable"}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/version")
async def version(request: Request) -> JSONResponse:
    return JSONResponse(request.app.state.version_info)


@router.get("/v1/verifiers")
async def verifiers(request: Request) -> JSONResponse:
    """The loaded verifiers (name, kind, whether it scores steps, where it came from) and the default one."""
    loaded: VerifierSet | None = request.app.state.verifiers
    data = [info.as_dict() for info in loaded.describe()] if loaded is not None else []
    unavailable = dict(loaded.unavailable) if loaded is not None else {}
    default = loaded.default_name if loaded is not None else None
    return JSONResponse({"object": "list", "data": data, "default": default, "unavailable": unavailable})


@router.get("/v1/strategies")
async def strategies(request: Request) -> JSONResponse:
    """The selectable strategies with what each needs and its options' JSON schema."""
    from ponder.strategies import registry
    from ponder.strategies.describe import NEEDS

    data = []
    for name in registry.names():
        cls = registry.get(name)
        needs = [flag.removeprefix("needs_") for flag in NEEDS if getattr(cls, flag, False)]
        data.append({"name": name, "needs": needs, "options": cls.Options.model_json_schema()})
    return JSONResponse({"object": "list", "data": data})
