"""Build the engine named by the settings (``auto``: vLLM when importable, else transformers)."""

from __future__ import annotations

import importlib.util
import logging

from ponder.core.protocols import Engine
from ponder.engines.settings import EngineSettings

log = logging.getLogger("ponder.engines")
ENGINE_KINDS = ("auto", "vllm", "hf", "openai")


def resolve_kind(kind: str) -> str:
    if kind == "auto":
        return "vllm" if importlib.util.find_spec("vllm") is not None else "hf"
    if kind not in ENGINE_KINDS:
        raise ValueError(f"unknown engine {kind!r}; choose from {', '.join(ENGINE_KINDS)}")
    return kind


async def build_engine(settings: EngineSettings) -> Engine:
    """Start the configured engine; call inside the event loop that will use it."""
    kind = resolve_kind(settings.kind)
    name = settings.served_model_names[0] if settings.served_model_names else None
    log.info("starting %s engine for %s", kind, settings.upstream if kind == "openai" else settings.model)
    if kind == "openai":
        from ponder.engines.openai_engine import OpenAIEngine

        if not settings.upstream:
            raise ValueError("--engine openai needs --upstream URL")
        engine = OpenAIEngine(settings.upstream, api_key=settings.upstream_api_key, model=settings.model or None)
        await engine.start()
        return engine
    if kind == "vllm":
        from ponder.engines.vllm_engine import VLLMEngine

        return await VLLMEngine.create(
            settings.model,
            served_model_name=name,
            max_model_len=settings.max_model_len,
            dtype=settings.dtype,
            tensor_parallel_size=settings.tensor_parallel_size,
            gpu_memory_utilization=settings.gpu_memory_utilization,
            enable_prefix_caching=settings.enable_prefix_caching,
            enforce_eager=settings.enforce_eager,
            seed=settings.seed,
            block_size=settings.block_size,
        )
    from ponder.engines.hf_engine import HFEngine

    return HFEngine(
        settings.model,
        served_model_name=name,
        device=settings.device,
        dtype=settings.dtype,
        max_model_len=settings.max_model_len,
        seed=settings.seed,
    )
