"""The one place where exceptions become OpenAI-shaped error responses with the matching HTTP status."""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ponder.core.errors import OverloadedError, PonderError
from ponder.server.protocol import ErrorInfo, ErrorResponse

log = logging.getLogger("ponder.server")

_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
}


def error_body(
    message: str, status: int, err_type: str | None = None, param: str | None = None, code: str | None = None
) -> dict:
    info = ErrorInfo(
        message=message, type=err_type or _STATUS_TYPES.get(status, "server_error"), param=param, code=code or status
    )
    return ErrorResponse(error=info).model_dump()


def error_from_exception(exc: BaseException) -> tuple[int, dict, dict[str, str]]:
    """Status, body and headers for any exception; unknown ones are bugs (500) and are logged."""
    if isinstance(exc, PonderError):
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))} if isinstance(exc, OverloadedError) else {}
        return exc.status, error_body(exc.message, exc.status, exc.type, exc.param, exc.code), headers
    log.exception("internal error", exc_info=exc)
    return 500, error_body(f"Internal server error: {type(exc).__name__}", 500, "server_error"), {}


def sse_error_event(exc: BaseException) -> str:
    """A mid-stream error as one SSE event (the caller then sends ``[DONE]``)."""
    _status, body, _headers = error_from_exception(exc)
    return f"data: {json.dumps(body)}\n\n"


def _validation_param(loc: tuple) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query")]
    # Drop pydantic's union-branch names ("str", "list[...]", "function-after[...]").
    parts = [p for p in parts if not any(ch in p for ch in "[]") and p not in ("str", "int", "float", "list")]
    return ".".join(parts) or None


def _validation_message(err: dict) -> str:
    message = err.get("msg", "invalid value")
    message = message.removeprefix("Value error, ")
    param = _validation_param(tuple(err.get("loc", ())))
    return f"{param}: {message}" if param else message


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        if first.get("type") == "json_invalid":
            return JSONResponse(error_body("Request body is not valid JSON.", 400), status_code=400)
        message = "; ".join(_validation_message(e) for e in errors[:5])
        param = _validation_param(tuple(first.get("loc", ())))
        return JSONResponse(error_body(message, 400, param=param), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            error_body(str(exc.detail), exc.status_code), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(PonderError)
    async def _ponder(_request: Request, exc: PonderError) -> JSONResponse:
        status, body, headers = error_from_exception(exc)
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(Exception)
    async def _bug(_request: Request, exc: Exception) -> JSONResponse:
        status, body, headers = error_from_exception(exc)
        return JSONResponse(body, status_code=status, headers=headers)
