"""The ``none`` strategy: one sample per choice, tokens streamed as the engine makes them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from strategies.registry import register


@register("none")
class NoneStrategy:
    """Plain decoding; the server streams it straight from the engine."""

    name = "none"

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
