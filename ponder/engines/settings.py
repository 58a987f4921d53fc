"""Which engine to run and the arguments passed through to it, fixed at start-up."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineSettings:
    """Which engine to run and the arguments passed through to it."""

    kind: str = "auto"  # auto | vllm | hf | openai
    model: str = ""
    served_model_names: tuple[str, ...] = ()
    upstream: str | None = None
    upstream_api_key: str | None = None
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float | None = None
    max_model_len: int | None = None
    dtype: str = "auto"
    enable_prefix_caching: bool = True
    enforce_eager: bool | None = None
    block_size: int | None = None  # KV-cache block: prefix-cache hits come in whole blocks
    seed: int = 0
    device: str = "auto"
