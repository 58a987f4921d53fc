"""Prometheus metrics of one app, in its own registry, and an engine wrapper that counts engine calls."""

from __future__ import annotations

from collections.abc import AsyncIterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,  # noqa: F401  (re-exported for the route)
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from ponder.core.protocols import Engine
from ponder.core.types import EngineCapabilities, Prompt, Sample, SampleDelta, SamplingParams

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_SAMPLE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096)


class Metrics:
    """All of Ponder's metrics; one instance per app so tests can build many apps."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "ponder_requests",
            "Requests by route, HTTP status and strategy.",
            ["route", "status", "strategy"],
            registry=r,
        )
        self.latency = Histogram(
            "ponder_request_latency_seconds",
            "End-to-end request latency.",
            ["route", "strategy"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "ponder_time_to_first_token_seconds",
            "Time to the first streamed token.",
            ["route", "strategy"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter("ponder_prompt_tokens", "Prompt tokens processed.", ["strategy"], registry=r)
        self.completion_tokens = Counter(
            "ponder_completion_tokens", "Tokens generated, every candidate counted.", ["strategy"], registry=r
        )
        # what a search spent, as its histogram: an adaptive search (stop_score) shows how often it stopped early
        self.search_samples = Histogram(
            "ponder_search_samples",
            "Samples (whole solutions) a request's search drew.",
            ["strategy"],
            buckets=_SAMPLE_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("ponder_requests_in_flight", "Requests being served now.", registry=r)
        self.engine_running = Gauge(
            "ponder_engine_requests_running", "Requests unfinished inside the engine (vLLM, hf, upstream).", registry=r
        )
        self.engine_calls = Counter("ponder_engine_calls", "Engine calls by method.", ["method"], registry=r)
        self.engine_errors = Counter("ponder_engine_errors", "Engine calls that raised.", ["method"], registry=r)
        self.cancelled = Counter(
            "ponder_requests_cancelled", "Requests cancelled by a client disconnect.", ["route"], registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class InstrumentedEngine:
    """An ``Engine`` around another whose calls are counted in one place."""

    def __init__(self, engine: Engine, metrics: Metrics) -> None:
        self._engine = engine
        self._metrics = metrics

    @property
    def model_id(self) -> str:
        return self._engine.model_id

    @property
    def capabilities(self) -> EngineCapabilities:
        return self._engine.capabilities  # read on each use: an engine may learn its capabilities at start-up

    def num_unfinished_requests(self) -> int:
        return self._engine.num_unfinished_requests()

    def decode(self, ids: list[int]) -> str | None:
        """The text of token ids; ``None`` when the engine has no tokenizer here (an upstream)."""
        decode = getattr(self._engine, "decode", None)
        return decode(ids) if decode is not None else None

    def count_tokens(self, text: str) -> int | None:
        """Tokens of ``text`` by the engine's tokenizer; ``None`` when the engine has none here (an upstream)."""
        count = getattr(self._engine, "count_tokens", None)
        return count(text) if count is not None else None

    async def generate(self, prompt: Prompt, params: SamplingParams, n: int = 1) -> list[Sample]:
        self._metrics.engine_calls.labels("generate").inc()
        try:
            return await self._engine.generate(prompt, params, n)
        except Exception:
            self._metrics.engine_errors.labels("generate").inc()
            raise

    async def stream(self, prompt: Prompt, params: SamplingParams, n: int = 1) -> AsyncIterator[SampleDelta]:
        self._metrics.engine_calls.labels("stream").inc()
        inner = self._engine.stream(prompt, params, n)
        try:
            async for delta in inner:
                yield delta
        except Exception:
            self._metrics.engine_errors.labels("stream").inc()
            raise
        finally:
            await inner.aclose()

    async def score(self, prompt: Prompt, continuation: str) -> list[float]:
        self._metrics.engine_calls.labels("score").inc()
        try:
            return await self._engine.score(prompt, continuation)
        except Exception:
            self._metrics.engine_errors.labels("score").inc()
            raise

    async def aclose(self) -> None:
        await self._engine.aclose()
