"""Exceptions that carry their OpenAI error type and HTTP status; the server maps them in one place."""

from __future__ import annotations


class PonderError(Exception):
    """Base of every error a client can be told about."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None  # a machine-readable reason; the error's ``code`` is the status when None

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidRequestError(PonderError):
    """A parameter is invalid (400)."""

    status = 400
    type = "invalid_request_error"


class PromptTooLongError(InvalidRequestError):
    """The prompt plus requested tokens do not fit the model's context (400)."""


class NotFoundError(PonderError):
    """Unknown model or route (404)."""

    status = 404
    type = "not_found_error"


class OverloadedError(PonderError):
    """More requests in flight than the server allows (503, with Retry-After)."""

    status = 503
    type = "overloaded_error"

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class EngineError(PonderError):
    """The engine (or the upstream server) failed (502 upstream, 500 in-process)."""

    status = 500
    type = "engine_error"


class UpstreamError(EngineError):
    """The upstream OpenAI-compatible server failed or was unreachable (502)."""

    status = 502
    type = "upstream_error"
