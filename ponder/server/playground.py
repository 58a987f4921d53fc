"""``/playground``: a page to chat with the model and watch a search stream live (plain HTML and JavaScript)."""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

router = APIRouter(include_in_schema=False)
_TYPES = {"playground.html": "text/html; charset=utf-8", "playground.js": "text/javascript; charset=utf-8"}


@cache
def _asset(name: str) -> bytes:
    return resources.files("ponder.server").joinpath("static", name).read_bytes()


@router.get("/playground")
async def playground() -> Response:
    return Response(_asset("playground.html"), media_type=_TYPES["playground.html"])


@router.get("/playground/playground.js")
async def playground_js() -> Response:
    return Response(_asset("playground.js"), media_type=_TYPES["playground.js"])
