"""An engine over plain transformers ``generate``, run in a worker thread, for machines without vLLM.

One generation runs at a time: a single-thread executor owns the model, so ``generate``, ``stream`` and
``score`` calls queue behind each other while the event loop stays free. The ``n`` samples of a call are
one batched ``generate`` (one row per sample; one row shared by all ``n`` when decoding greedily).

Every decoding step goes through a per-call ``_Session`` in the worker thread: a logits processor keeps
the raw logits of the step (for logprobs) and applies OpenAI presence / frequency penalties, and a
stopping criterion hands the step's new tokens to the session, which detokenizes them incrementally,
cuts at stop strings, and posts ``SampleDelta`` objects to the caller's ``asyncio.Queue`` with
``loop.call_soon_threadsafe``. The same criterion stops a row at its stop string and stops the whole
``generate`` when the request is cancelled (a ``threading.Event``). A ``BaseStreamer`` is attached too,
so the session also sees the steps of transformers versions that stream before checking criteria.

``torch`` and ``transformers`` are imported by the constructor, never at module import.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import random
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ponder.core.errors import EngineError, InvalidRequestError, PonderError, PromptTooLongError
from ponder.core.streams import collect
from ponder.core.types import (
    EngineCapabilities,
    FinishReason,
    Prompt,
    Sample,
    SampleDelta,
    SamplingParams,
    TokenLogprob,
)
from ponder.engines import hf_grammar
from ponder.engines.base import (
    check_logprobs,
    checked_ids,
    max_prompt_chars,
    render_chat,
    resolve_max_tokens,
)

log = logging.getLogger("ponder.engines.hf")

_DONE = object()  # the worker's last item on a call's queue (after it, nothing else comes)
_DETOKENIZE_CONTEXT = 5  # prompt tokens decoded before the first new token, so leading spaces survive
_DTYPES = {
    "float32": "float32",
    "float": "float32",
    "fp32": "float32",
    "float16": "float16",
    "half": "float16",
    "fp16": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}


# ---------------------------------------------------------------------------------------------------------------
# worker-side state of one call


class _IncrementalDecoder:
    """Decodes one sequence token by token; holds back bytes that do not form a whole character yet."""

    def __init__(self, decode: Callable[[list[int]], str], context: list[int]) -> None:
        self._decode = decode
        self._ids = list(context)
        self._prefix = 0  # window start: decoded with the new tokens so that spacing is right
        self._read = len(self._ids)  # tokens before this are already turned into text

    def push(self, token: int) -> str:
        self._ids.append(token)
        return self._advance(final=False)

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character comes out as U+FFFD)."""
        return self._advance(final=True)

    def _advance(self, *, final: bool) -> str:
        if self._read == len(self._ids):
            return ""
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        if not final and after.endswith("\ufffd"):
            return ""  # the last token(s) end inside a character: wait for the rest
        self._prefix, self._read = self._read, len(self._ids)
        return after[len(before) :]


class _Row:
    """One batch row of a call: its text so far, stop strings, token count and finish state.

    With stop strings, the last ``len(longest stop) - 1`` characters are held back from the stream
    until it is clear they do not begin a stop string.
    """

    def __init__(self, indices: list[int], decoder: _IncrementalDecoder, stops: tuple[str, ...], max_tokens: int):
        self.indices = indices
        self.decoder = decoder
        self.stops = stops
        self.hold = max((len(s) for s in stops), default=1) - 1
        self.max_tokens = max_tokens
        self.text = ""
        self.emitted = 0
        self.num_tokens = 0
        self.finish_reason: FinishReason | None = None
        self.stop_reason: str | None = None

    def feed(self, piece: str) -> None:
        """Append decoded text; cut it and finish at the earliest stop string."""
        if not piece or self.finish_reason is not None:
            return
        start = max(0, len(self.text) - self.hold)
        self.text += piece
        hit: tuple[int, str] | None = None
        for stop in self.stops:
            at = self.text.find(stop, start)
            if at != -1 and (hit is None or (at, len(stop)) < (hit[0], len(hit[1]))):
                hit = (at, stop)
        if hit is not None:
            self.text = self.text[: hit[0]]
            self.finish("stop", hit[1])

    def finish(self, reason: FinishReason, stop: str | None = None) -> None:
        if self.finish_reason is None:
            self.finish_reason, self.stop_reason = reason, stop

    def take(self) -> str:
        """Text that may be sent now."""
        end = len(self.text) if self.finish_reason is not None else len(self.text) - self.hold
        if end <= self.emitted:
            return ""
        out = self.text[self.emitted : end]
        self.emitted = end
        return out


@dataclass(eq=False)
class _Job:
    """One ``generate`` / ``stream`` call: what the worker needs and how it reports back."""

    input_ids: list[int]
    params: SamplingParams
    n: int
    max_tokens: int
    seed: int | None
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue
    cancel: threading.Event = field(default_factory=threading.Event)
    closed: bool = False  # the caller stopped listening

    def post(self, item: Any) -> None:
        """Hand an item to the caller's event loop (from the worker thread)."""
        if self.closed:
            return
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the caller's loop is closed: nobody is listening any more
            self.closed = True
            self.cancel.set()


class _Session:
    """Worker-side bookkeeping of one job, fed one decoding step at a time."""

    def __init__(self, engine: HFEngine, job: _Job, rows: int) -> None:
        self.engine = engine
        self.job = job
        self.prompt_len = len(job.input_ids)
        self.top_k = job.params.logprobs
        self.eos = engine._eos_ids
        context = job.input_ids[-_DETOKENIZE_CONTEXT:]
        stops = tuple(s for s in job.params.stop if s)
        self.rows = [
            _Row(
                list(range(job.n)) if rows == 1 else [r],
                _IncrementalDecoder(engine._decode, context),
                stops,
                job.max_tokens,
            )
            for r in range(rows)
        ]
        self.steps = 0  # decoding steps handed to the rows so far
        self.puts = 0  # streamer.put calls after the prompt
        self.logprobs = None  # [rows, vocab] log_softmax of this step's raw logits, when logprobs are asked for
        self.counts = None  # [rows, vocab] generated-token counts, for penalties
        self.counted = self.prompt_len

    # --- logits processor: raw logits in, penalised logits out -------------------------------------------
    def process(self, input_ids: Any, scores: Any) -> Any:
        torch = self.engine._torch
        if self.top_k is not None:
            self.logprobs = torch.log_softmax(scores.float(), dim=-1)
        presence, frequency = self.job.params.presence_penalty, self.job.params.frequency_penalty
        if not presence and not frequency:
            return scores
        if self.counts is None:
            self.counts = torch.zeros_like(scores, dtype=torch.float32)
        new = input_ids[:, self.counted :]
        if new.numel():
            self.counts.scatter_add_(1, new, torch.ones_like(new, dtype=torch.float32))
            self.counted = input_ids.shape[1]
        penalty = frequency * self.counts + presence * (self.counts > 0).float()
        return scores - penalty.to(scores.dtype)

    # --- stopping criterion: take the step, say which rows are done ---------------------------------------
    def check(self, input_ids: Any) -> Any:
        torch = self.engine._torch
        step = input_ids.shape[1] - self.prompt_len
        if step > self.steps:
            self.advance(input_ids[:, -1].tolist())
        if self.job.cancel.is_set():
            done = [True] * len(self.rows)
        else:
            done = [row.finish_reason is not None for row in self.rows]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    # --- streamer: only needed where transformers streams before it checks the criteria -------------------
    def put(self, value: Any) -> None:
        if value.dim() > 1:
            return  # the prompt, sent once before the first step
        self.puts += 1
        if self.puts > self.steps:
            self.advance(value.reshape(-1).tolist())

    # --- turning tokens into deltas ------------------------------------------------------------------------
    def advance(self, tokens: list[int]) -> None:
        self.steps += 1
        if self.job.cancel.is_set():
            return
        chosen = tops = None
        if self.top_k is not None and self.logprobs is not None:
            lp = self.logprobs
            index = lp.new_tensor(tokens, dtype=self.engine._torch.long).unsqueeze(1)
            chosen = lp.gather(1, index).squeeze(1).tolist()
            if self.top_k > 0:
                values, ids = lp.topk(min(self.top_k, lp.shape[-1]), dim=-1)
                tops = (values.tolist(), ids.tolist())
        deltas: list[SampleDelta] = []
        for r, (row, token) in enumerate(zip(self.rows, tokens, strict=False)):
            if row.finish_reason is not None:
                continue
            if token in self.eos:
                row.feed(row.decoder.flush())
                row.finish("stop")
                deltas += self._deltas(row, 0, None)
                continue
            row.num_tokens += 1
            row.feed(row.decoder.push(token))
            if row.finish_reason is None and row.num_tokens >= row.max_tokens:
                row.feed(row.decoder.flush())
                row.finish("length")
            logprob = None
            if chosen is not None:
                top = ()
                if tops is not None:
                    top = tuple((self.engine._token_str(i), v) for v, i in zip(tops[0][r], tops[1][r], strict=True))
                logprob = TokenLogprob(self.engine._token_str(token), chosen[r], top)
            deltas += self._deltas(row, 1, logprob)
        if deltas:
            self.job.post(deltas)

    def _deltas(self, row: _Row, num_tokens: int, logprob: TokenLogprob | None) -> list[SampleDelta]:
        text = row.take()
        if not text and not num_tokens and row.finish_reason is None:
            return []
        return [
            SampleDelta(
                index=i,
                text=text,
                num_tokens=num_tokens,
                logprobs=[logprob] if logprob is not None else None,
                finish_reason=row.finish_reason,
                prompt_tokens=self.prompt_len,
                stop_reason=row.stop_reason,
            )
            for i in row.indices
        ]

    def finish_all(self, reason: FinishReason) -> None:
        """After ``generate`` returns: end every row still open (``length`` normally, ``abort`` if cancelled)."""
        deltas: list[SampleDelta] = []
        for row in self.rows:
            if row.finish_reason is None:
                row.feed(row.decoder.flush())
                row.finish(reason)
                deltas += self._deltas(row, 0, None)
        if deltas:
            self.job.post(deltas)


@functools.cache
def _hooks() -> tuple[type, type, type]:
    """transformers subclasses that forward to a ``_Session`` (built on first use: transformers is heavy)."""
    from transformers import LogitsProcessor, StoppingCriteria
    from transformers.generation.streamers import BaseStreamer

    class SessionLogits(LogitsProcessor):
        def __init__(self, session: _Session) -> None:
            self.session = session

        def __call__(self, input_ids, scores):
            return self.session.process(input_ids, scores)

    class SessionStopping(StoppingCriteria):
        def __init__(self, session: _Session) -> None:
            self.session = session

        def __call__(self, input_ids, scores, **kwargs):
            return self.session.check(input_ids)

    class SessionStreamer(BaseStreamer):
        def __init__(self, session: _Session) -> None:
            self.session = session

        def put(self, value) -> None:
            self.session.put(value)

        def end(self) -> None:
            pass

    return SessionLogits, SessionStopping, SessionStreamer


# ---------------------------------------------------------------------------------------------------------------
# the engine


class HFEngine:
    """The ``Engine`` protocol over a transformers causal LM, one generation at a time in a worker thread."""

    def __init__(
        self,
        model: str,
        *,
        served_model_name: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        max_model_len: int | None = None,
        seed: int = 0,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._torch = torch
        self._device = torch.device(_resolve_device(torch, device))
        torch_dtype = _resolve_dtype(torch, dtype, self._device.type)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            self._model = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype)
        except Exception as exc:
            raise EngineError(f"could not load model {model!r}: {exc}") from exc
        self._model.to(self._device).eval()

        limit = max_model_len or _context_limit(self._model.config, self.tokenizer)
        self.model_id = served_model_name or model
        # response_format and forced tool calls, when xgrammar is installed
        vocab = int(getattr(self._model.config, "vocab_size", 0) or len(self.tokenizer))
        self._grammars = hf_grammar.Grammars(self.tokenizer, vocab) if hf_grammar.available() else None
        self.capabilities = EngineCapabilities(
            max_model_len=int(limit),
            logprobs=True,
            max_top_logprobs=20,
            prefix_continuation=True,
            scoring=True,
            seed=True,
            penalties=True,
            max_prompt_chars=max_prompt_chars(self.tokenizer, int(limit)),
            structured_outputs=self._grammars is not None,
        )

        # OpenAI semantics: requests say everything; the checkpoint's sampling defaults do not apply.
        self._model.generation_config, self._eos_ids = _plain_generation_config(
            self._model.generation_config, self.tokenizer
        )

        self._rng = random.Random(seed)  # seeds of requests that bring none
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hf-engine")
        self._tok_lock = threading.Lock()  # the tokenizer is shared by the event loop and the worker
        self._count_lock = threading.Lock()
        self._jobs: set[_Job] = set()
        self._token_strs: dict[int, str] = {}
        self._closed = False
        log.info("loaded %s on %s (%s), max_model_len=%d", model, self._device, self._model.dtype, limit)

    # --- public API --------------------------------------------------------------------------------------
    async def generate(self, prompt: Prompt, params: SamplingParams, n: int = 1) -> list[Sample]:
        return await collect(self.stream(prompt, params, n), params, n)

    async def stream(self, prompt: Prompt, params: SamplingParams, n: int = 1) -> AsyncIterator[SampleDelta]:
        self._check_open()
        input_ids, max_tokens = self._prepare(prompt, params, n)
        prompt_logprobs = None
        if params.prompt_logprobs is not None:  # one forward pass over the prompt, in the worker, first
            work = self._executor.submit(self._prompt_logprobs_sync, input_ids, params.prompt_logprobs)
            prompt_logprobs = await asyncio.wrap_future(work)
        async with contextlib.aclosing(self._generated(input_ids, max_tokens, params, n)) as deltas:
            async for delta in deltas:
                delta.prompt_logprobs, prompt_logprobs = prompt_logprobs, None  # on the first delta
                yield delta

    async def _generated(
        self, input_ids: list[int], max_tokens: int, params: SamplingParams, n: int
    ) -> AsyncIterator[SampleDelta]:
        if max_tokens == 0:
            for i in range(n):
                yield SampleDelta(index=i, text="", finish_reason="length", prompt_tokens=len(input_ids))
            return
        seed = params.seed
        if seed is None and params.temperature > 0:
            seed = self._rng.getrandbits(63)
        loop = asyncio.get_running_loop()
        job = _Job(input_ids, params, n, max_tokens, seed, loop, asyncio.Queue())
        future = self._submit(job)
        try:
            while True:
                item = await job.queue.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                for delta in item:
                    yield delta
        finally:
            job.closed = True
            if not future.done():
                job.cancel.set()
                future.cancel()  # only takes effect while it is still queued

    async def score(self, prompt: Prompt, continuation: str) -> list[float]:
        self._check_open()
        prompt_ids = self._encode_prompt(prompt)
        with self._tok_lock:
            cont_ids = self.tokenizer(continuation, add_special_tokens=False)["input_ids"] if continuation else []
        if not cont_ids:
            return []
        if not prompt_ids:
            raise InvalidRequestError("Cannot score a continuation of an empty prompt.", param="prompt")
        total = len(prompt_ids) + len(cont_ids)
        if total > self.capabilities.max_model_len:
            raise PromptTooLongError(
                f"This model's maximum context length is {self.capabilities.max_model_len} tokens, "
                f"but the prompt and continuation have {total} tokens.",
                param="messages",
            )
        try:
            future = self._executor.submit(self._score_sync, prompt_ids, cont_ids)
        except RuntimeError as exc:
            raise EngineError("The engine is closed.") from exc
        try:
            return await asyncio.wrap_future(future)
        except PonderError:
            raise
        except Exception as exc:
            log.exception("scoring failed")
            raise EngineError(f"Scoring failed: {exc}") from exc

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` (no special tokens added), as the usage counts reasoning tokens."""
        with self._tok_lock:
            return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def num_unfinished_requests(self) -> int:
        """Generation calls queued or running (0 when idle)."""
        with self._count_lock:
            return len(self._jobs)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._count_lock:
            jobs = list(self._jobs)
        for job in jobs:
            job.cancel.set()
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        self._model = None
        gc.collect()
        if self._device.type == "cuda":
            self._torch.cuda.empty_cache()

    # --- request preparation (event loop thread) ---------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise EngineError("The engine is closed.")

    def _encode_prompt(self, prompt: Prompt) -> list[int]:
        if prompt.token_ids is not None:
            return checked_ids(prompt.token_ids, len(self.tokenizer))
        with self._tok_lock:
            try:
                text = render_chat(self.tokenizer, prompt)
            except Exception as exc:
                raise InvalidRequestError(f"Could not apply the chat template: {exc}", param="messages") from exc
            return list(self.tokenizer(text, add_special_tokens=prompt.text is not None)["input_ids"])

    def _prepare(self, prompt: Prompt, params: SamplingParams, n: int) -> tuple[list[int], int]:
        if n < 1:
            raise InvalidRequestError("n must be at least 1.", param="n")
        if params.temperature < 0:
            raise InvalidRequestError("temperature must be non-negative.", param="temperature")
        if not 0 < params.top_p <= 1:
            raise InvalidRequestError("top_p must be in (0, 1].", param="top_p")
        if params.max_tokens is not None and params.max_tokens < 0:
            raise InvalidRequestError("max_tokens must be non-negative.", param="max_tokens")
        if params.logprobs is not None and params.logprobs < 0:
            raise InvalidRequestError("top_logprobs must be non-negative.", param="top_logprobs")
        check_logprobs(params, self.capabilities)
        input_ids = self._encode_prompt(prompt)
        if not input_ids:
            raise InvalidRequestError("The prompt is empty.", param="prompt")
        return input_ids, resolve_max_tokens(params, len(input_ids), self.capabilities.max_model_len)

    def _submit(self, job: _Job) -> Future:
        with self._count_lock:
            self._jobs.add(job)
        try:
            future = self._executor.submit(self._work, job)
        except RuntimeError as exc:  # shut down
            self._release(job)
            raise EngineError("The engine is closed.") from exc
        future.add_done_callback(lambda _: self._release(job))  # covers a job cancelled before it ran
        return future

    def _release(self, job: _Job) -> None:
        with self._count_lock:
            self._jobs.discard(job)

    # --- worker thread -----------------------------------------------------------------------------------
    def _work(self, job: _Job) -> None:
        result: Any = _DONE
        try:
            if not job.cancel.is_set():
                self._generate_sync(job)
        except PonderError as exc:
            result = exc
        except Exception as exc:
            log.exception("generation failed")
            result = EngineError(f"Generation failed: {exc}")
        finally:
            self._release(job)
            job.post(result)

    def _generate_sync(self, job: _Job) -> None:
        torch = self._torch
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        greedy = job.params.temperature == 0
        rows = 1 if greedy else job.n
        session = _Session(self, job, rows)
        logits_cls, stopping_cls, streamer_cls = _hooks()
        ids = torch.tensor([job.input_ids], dtype=torch.long, device=self._device).repeat(rows, 1)
        config = GenerationConfig(max_new_tokens=job.max_tokens, do_sample=not greedy)
        if not greedy:
            config.temperature = job.params.temperature
            config.top_p = job.params.top_p
            config.top_k = 0
        processors = [logits_cls(session)]  # first: it keeps the model's own logits for logprobs
        if job.params.structured is not None and self._grammars is not None:
            processors.append(self._grammars.processor(job.params.structured))
        with self._rng_scope(None if greedy else job.seed):
            self._model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                generation_config=config,
                logits_processor=LogitsProcessorList(processors),
                stopping_criteria=StoppingCriteriaList([stopping_cls(session)]),
                streamer=streamer_cls(session),
            )
        session.finish_all("abort" if job.cancel.is_set() else "length")

    @contextlib.contextmanager
    def _rng_scope(self, seed: int | None) -> Iterator[None]:
        """Seed torch for one call without disturbing the process's RNG state."""
        if seed is None:
            yield
            return
        torch = self._torch
        if self._device.type == "cpu":
            fork = torch.random.fork_rng(devices=[])
        else:
            index = self._device.index if self._device.index is not None else 0
            fork = torch.random.fork_rng(devices=[index], device_type=self._device.type)
        with fork:
            torch.manual_seed(seed)
            yield

    def _prompt_logprobs_sync(self, ids: list[int], k: int) -> list[TokenLogprob]:
        """Each prompt token's logprob and top ``k`` alternatives; the first token, which nothing precedes, has none."""
        torch = self._torch
        x = torch.tensor([ids], dtype=torch.long, device=self._device)
        with torch.inference_mode():
            logprobs = torch.log_softmax(self._model(input_ids=x).logits[0, :-1].float(), dim=-1)
            target = torch.tensor(ids[1:], dtype=torch.long, device=self._device).unsqueeze(1)
            chosen = logprobs.gather(1, target).squeeze(1).tolist()
            values, top_ids = logprobs.topk(min(k, logprobs.shape[-1]), dim=-1) if k else (None, None)
        out = [TokenLogprob(self._token_str(ids[0]), None)]
        for pos, token in enumerate(ids[1:]):
            top = (
                ()
                if values is None
                else tuple(
                    (self._token_str(i), v) for v, i in zip(values[pos].tolist(), top_ids[pos].tolist(), strict=True)
                )
            )
            out.append(TokenLogprob(self._token_str(token), chosen[pos], top))
        return out

    def decode(self, ids: list[int]) -> str:
        """The text of token ids (the echo of a token-id prompt)."""
        return self._decode(ids)

    def _score_sync(self, prompt_ids: list[int], cont_ids: list[int]) -> list[float]:
        torch = self._torch
        ids = torch.tensor([prompt_ids + cont_ids], dtype=torch.long, device=self._device)
        with torch.inference_mode():
            logits = self._model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].float()
            logprobs = torch.log_softmax(logits, dim=-1)
            target = torch.tensor(cont_ids, dtype=torch.long, device=self._device).unsqueeze(1)
            return logprobs.gather(1, target).squeeze(1).tolist()

    def _decode(self, ids: list[int]) -> str:
        with self._tok_lock:
            return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def _token_str(self, token: int) -> str:
        text = self._token_strs.get(token)
        if text is None:
            with self._tok_lock:
                text = self.tokenizer.decode([token], skip_special_tokens=False, clean_up_tokenization_spaces=False)
            self._token_strs[token] = text
        return text


def _context_limit(config: Any, tokenizer: Any) -> int:
    """The model's context length: its position embeddings, else the tokenizer's limit when it is a real one."""
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    limit = getattr(text_config, "max_position_embeddings", None)
    if not limit:
        tokenizer_limit = getattr(tokenizer, "model_max_length", None)
        limit = tokenizer_limit if tokenizer_limit and tokenizer_limit < 1_000_000 else 2048
    return int(limit)


def _plain_generation_config(old: Any, tokenizer: Any) -> tuple[Any, frozenset[int]]:
    """A ``GenerationConfig`` with only the checkpoint's special tokens (no sampling defaults), and its EOS ids."""
    from transformers import GenerationConfig

    eos = _as_list(getattr(old, "eos_token_id", None)) + _as_list(tokenizer.eos_token_id)
    pad = getattr(old, "pad_token_id", None)
    if pad is None:
        pad = tokenizer.pad_token_id
    if pad is None and eos:
        pad = eos[0]
    config = GenerationConfig(
        eos_token_id=list(dict.fromkeys(eos)) or None, pad_token_id=pad, bos_token_id=getattr(old, "bos_token_id", None)
    )
    return config, frozenset(eos)


def _as_list(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, int):
        return [value]
    return [int(v) for v in value]


def _resolve_device(torch: Any, device: str) -> str:
    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def _resolve_dtype(torch: Any, dtype: str, device_type: str) -> Any:
    """``auto``: the checkpoint's dtype on accelerators, float32 on CPU."""
    if dtype == "auto":
        return "auto" if device_type != "cpu" else torch.float32
    name = _DTYPES.get(dtype.lower())
    if name is None:
        raise ValueError(f"unknown dtype {dtype!r}; choose from auto, {', '.join(sorted(set(_DTYPES.values())))}")
    return getattr(torch, name)
