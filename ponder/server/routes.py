"""Thin HTTP routes: parse, admit, hand to the service, frame the answer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ponder.core.errors import OverloadedError
from ponder.core.protocols import Engine
from ponder.server.headers import ponder_header
from ponder.server.metrics import CONTENT_TYPE_LATEST
from ponder.server.middleware import ClientDisconnected, DisconnectAwareStreamingResponse, until_disconnect
from ponder.server.protocol import ChatCompletionRequest, CompletionRequest, ModelCard, ModelList, PonderFields
from ponder.server.protocol_responses import ResponsesRequest
from ponder.server.serving import CLIENT_CLOSED, Admission
from ponder.server.serving_chat import ChatService
from ponder.server.serving_completion import CompletionService

if TYPE_CHECKING:
    from ponder.verifiers.registry import VerifierSet

router = APIRouter()


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


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request):
    return await _serve(request, request.app.state.chat, body)


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request):
    return await _serve(request, request.app.state.completions, body)


@router.post("/v1/responses")
async def responses(body: ResponsesRequest, request: Request):
    """The Responses API, stateless: reasoning state travels in the items' ``encrypted_content``."""
    return await _serve(request, request.app.state.responses, body)


@router.get("/v1/models")
async def models(request: Request) -> ModelList:
    engine: Engine = request.app.state.engine
    cards = [
        ModelCard(id=name, root=engine.model_id, max_model_len=engine.capabilities.max_model_len)
        for name in request.app.state.model_names
    ]
    return ModelList(data=cards)


@router.get("/health")
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
