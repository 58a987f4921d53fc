"""An engine over an upstream OpenAI-compatible server (``vllm serve``, SGLang, ...) spoken to with httpx.

Ponder runs in front of a fleet this way (``--engine openai --upstream URL``): every ``generate``,
``stream`` and ``score`` call becomes one HTTP request to the upstream, and strategies get their
parallelism from many such requests in flight at once.

Capabilities are detected at :meth:`OpenAIEngine.start` by probing the upstream with one-token
requests; a probe that fails (any status, a timeout, a field the upstream ignores) leaves that
capability ``False`` and never fails the start:

- ``logprobs``: a chat completion with ``logprobs``/``top_logprobs`` returns ``logprobs.content``.
- ``prefix_continuation``: a chat completion with a final assistant message and vLLM's
  ``continue_final_message: true, add_generation_prompt: false`` succeeds; when the upstream echoes
  the rendered prompt (vLLM's ``return_prompt_text``) it must end with the partial assistant turn.
  An upstream that silently ignores unknown fields and does not echo the prompt is taken at its word.
- ``scoring``: the same continued chat with vLLM's ``prompt_logprobs: 0`` returns one prompt logprob
  per prompt token (needs ``prefix_continuation`` too). Raw-text prompts are scored the same way on
  ``/v1/completions``.
- per-choice token ids (vLLM's ``return_token_ids``): used to count each choice's tokens exactly.
- ``/tokenize`` (vLLM): counts prompt tokens for scoring without a generation step, and gives
  ``max_model_len`` when the model card lacks it.
- ``seed`` and ``penalties`` are standard OpenAI fields that vLLM and SGLang honour; they are
  assumed, not probed (a wrong guess only makes sampling less reproducible, it fails nothing).

Token counts. The upstream reports ``usage.completion_tokens`` for all ``n`` choices together
(vLLM does). Each sample's ``num_tokens`` comes, in order of preference, from the choice's
``token_ids`` (exact), from its logprobs (exact; with ``n > 1`` the engine asks for top-0 logprobs
just to count them when token ids are unavailable), else from apportioning the total by text length.
The counts are always reconciled so that their sum equals the upstream's ``usage.completion_tokens``.
While streaming, each delta counts its ``token_ids`` or logprobs, else 1 per non-empty delta; the
last finishing delta is held back until the usage chunk (which the upstream sends right after it)
and absorbs any shortfall, so the stream's sum matches the upstream's usage too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx

from ponder.core.errors import (
    InvalidRequestError,
    NotFoundError,
    OverloadedError,
    PonderError,
    PromptTooLongError,
    UpstreamError,
)
from ponder.core.reasoning import THINK_CLOSE, THINK_OPEN
from ponder.core.streams import collect
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
from ponder.engines.base import check_logprobs, copied_deltas, copies, greedy_fan_out

log = logging.getLogger("ponder.engines.openai")

DEFAULT_MAX_MODEL_LEN = 32768  # when neither the model card nor /tokenize tells
_CONTEXT_MARKERS = (
    "maximum context length",
    "max_model_len",
    "context length",
    "context window",
    "too long",
    "exceeds the limit",
)
_PROBE_MESSAGES = ({"role": "user", "content": "Hi"},)
_PROBE_PREFIX = "Hel"


def _root_url(base_url: str) -> str:
    """``http://host:8000`` from ``http://host:8000``, ``.../`` or ``.../v1``."""
    url = base_url.strip().rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url


def _opens_think(prefix: str) -> bool:
    """Whether the partial assistant turn leaves a ``<think>`` block open."""
    return prefix.rfind(THINK_OPEN) > prefix.rfind(THINK_CLOSE)


def _is_context_error(message: str) -> bool:
    lowered = message.lower()
    return any(marker in lowered for marker in _CONTEXT_MARKERS)


def _error_message(payload: Any, text: str) -> tuple[str, str | None]:
    """The message and param of an upstream error body (OpenAI, FastAPI or SGLang shapes)."""
    if isinstance(payload, dict):
        err = payload.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"]), err.get("param")
        if isinstance(err, str) and err:
            return err, None
        if payload.get("message"):
            return str(payload["message"]), payload.get("param")
        detail = payload.get("detail")
        if isinstance(detail, str):
            return detail, None
        if isinstance(detail, list):
            parts = []
            for item in detail:
                if isinstance(item, dict):
                    loc = ".".join(str(x) for x in item.get("loc", ()) if x != "body")
                    parts.append(f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg", "")))
            if parts:
                return "; ".join(parts), None
    return (text.strip()[:1000] or "(empty response)"), None


def _apportion(total: int, weights: list[int]) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` that sum to ``total`` (largest remainder)."""
    if not weights:
        return []
    if sum(weights) <= 0:
        weights = [1] * len(weights)
    scale = sum(weights)
    exact = [total * w / scale for w in weights]
    counts = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: exact[i] - counts[i], reverse=True)
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _finish_reason(value: Any) -> FinishReason:
    if value == "length":
        return "length"
    if value == "abort":
        return "abort"
    if value == "error":
        raise UpstreamError("The upstream server reported an internal error while generating.")
    return "stop"  # stop, tool_calls, content_filter, repetition, ...


def _chat_logprobs(logprobs: Any) -> list[TokenLogprob] | None:
    """``choice.logprobs`` of a chat completion (or chunk) as TokenLogprobs."""
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if content is None:
        return None
    return [
        TokenLogprob(
            token=str(item.get("token", "")),
            logprob=float(item.get("logprob", 0.0)),
            top=tuple((str(t.get("token", "")), float(t.get("logprob", 0.0))) for t in item.get("top_logprobs") or ()),
        )
        for item in content
    ]


def _completion_logprobs(logprobs: Any) -> list[TokenLogprob] | None:
    """``choice.logprobs`` of a legacy completion (parallel lists) as TokenLogprobs."""
    if not isinstance(logprobs, dict) or logprobs.get("tokens") is None:
        return None
    tokens = logprobs.get("tokens") or []
    values = logprobs.get("token_logprobs") or []
    tops = logprobs.get("top_logprobs") or []
    out = []
    for i, token in enumerate(tokens):
        value = values[i] if i < len(values) else None
        top = tops[i] if i < len(tops) and isinstance(tops[i], dict) else {}
        out.append(
            TokenLogprob(
                token=str(token),
                logprob=float(value) if value is not None else 0.0,
                top=tuple((str(t), float(lp)) for t, lp in top.items()),
            )
        )
    return out


def _prompt_logprob_value(entry: Any) -> float | None:
    """One entry of vLLM's ``prompt_logprobs`` (``{token_id: {logprob, rank, decoded_token}}``)."""
    if not entry or not isinstance(entry, dict):
        return None
    value = next(iter(entry.values()))
    if isinstance(value, dict):
        value = value.get("logprob")
    return float(value) if value is not None else None


class _ReasoningJoiner:
    """Puts upstream-split reasoning back as ``<think>...</think>`` in front of the content, incrementally."""

    def __init__(self, *, in_think: bool) -> None:
        self._in_think = in_think  # the prompt's prefix already opened <think>
        self._reasoning = False  # inside reasoning that the upstream split off

    def feed(self, reasoning: str | None, content: str | None) -> str:
        out = ""
        if reasoning:
            if not self._reasoning:
                out += "" if self._in_think else THINK_OPEN
                self._reasoning = True
                self._in_think = True
            out += reasoning
        if content:
            if self._reasoning:
                out += THINK_CLOSE
                self._reasoning = False
                self._in_think = False
            out += content
        return out


def _message_parts(message: Any) -> tuple[str | None, str | None]:
    """(reasoning, content) of a chat message or delta; vLLM says ``reasoning``, others ``reasoning_content``."""
    if not isinstance(message, dict):
        return None, None
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    return (reasoning if isinstance(reasoning, str) else None), message.get("content")


class _StreamReader:
    """Turns the chunks of one upstream stream into ``SampleDelta``s, counting each choice's tokens.

    The last finishing delta is held back until the usage chunk (which the upstream sends right after
    it), so that it can absorb any shortfall between the counted tokens and the upstream's usage.
    """

    def __init__(self, prompt: Prompt, n: int, *, want_logprobs: bool) -> None:
        self.n = n
        self.want_logprobs = want_logprobs
        self.is_chat = prompt.messages is not None
        self.in_think = _opens_think(prompt.prefix)
        self.joiners: dict[int, _ReasoningJoiner] = {}
        self.counted: dict[int, int] = {}
        self.finished: set[int] = set()
        self.held: SampleDelta | None = None
        self.total: int | None = None  # the upstream's usage.completion_tokens
        self.prompt_tokens = 0
        self.cached_tokens = 0

    def feed(self, chunk: dict) -> list[SampleDelta]:
        """The deltas of one chunk (none for the role-only opening chunk, the held one, or a finished choice)."""
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.total = usage.get("completion_tokens", self.total)
            self.prompt_tokens = int(usage.get("prompt_tokens") or self.prompt_tokens)
            details = usage.get("prompt_tokens_details")
            if isinstance(details, dict):
                self.cached_tokens = int(details.get("cached_tokens") or 0)
        if isinstance(chunk.get("prompt_token_ids"), list):
            self.prompt_tokens = len(chunk["prompt_token_ids"])
        deltas = []
        for choice in chunk.get("choices") or []:
            delta = self._choice(choice)
            if delta is not None:
                deltas.append(delta)
        return deltas

    def _choice(self, choice: dict) -> SampleDelta | None:
        index = int(choice.get("index", 0))
        if index in self.finished:
            return None
        if isinstance(choice.get("prompt_token_ids"), list):
            self.prompt_tokens = len(choice["prompt_token_ids"])
        if self.is_chat:
            joiner = self.joiners.setdefault(index, _ReasoningJoiner(in_think=self.in_think))
            text = joiner.feed(*_message_parts(choice.get("delta")))
            lps = _chat_logprobs(choice.get("logprobs"))
        else:
            text = str(choice.get("text") or "")
            lps = _completion_logprobs(choice.get("logprobs"))
        token_ids = choice.get("token_ids")
        if isinstance(token_ids, list):
            count = len(token_ids)
        elif lps is not None:
            count = len(lps)
        else:
            count = 1 if text else 0
        self.counted[index] = self.counted.get(index, 0) + count
        reason = choice.get("finish_reason")
        stop = choice.get("stop_reason")
        delta = SampleDelta(
            index=index,
            text=text,
            num_tokens=count,
            logprobs=lps if self.want_logprobs else None,
            finish_reason=_finish_reason(reason) if reason else None,
            prompt_tokens=self.prompt_tokens,
            stop_reason=stop if reason and isinstance(stop, str) else None,
        )
        if reason:
            self.finished.add(index)
            if len(self.finished) >= self.n:
                self.held = delta  # completed by the usage chunk that follows
                return None
        elif not (text or count):
            return None  # the role-only opening chunk
        return delta

    def last(self) -> SampleDelta | None:
        """The held finishing delta, completed by the usage; ``None`` when the stream ended early."""
        if self.held is None or len(self.finished) < self.n:
            return None
        if self.total is not None:
            shortfall = int(self.total) - sum(self.counted.values())
            if shortfall > 0:
                self.held.num_tokens += shortfall
        self.held.prompt_tokens = self.prompt_tokens or self.held.prompt_tokens
        self.held.cached_tokens = self.cached_tokens
        return self.held


class OpenAIEngine:
    """The ``Engine`` protocol over an upstream ``/v1`` server; call :meth:`start` (or use :meth:`connect`) first.

    ``base_url`` may name the server root or its ``/v1``. ``model``: the upstream model to use (default:
    the first it serves). ``client``: an ``httpx.AsyncClient`` to use instead of an owned one (then
    ``timeout`` is the client's business and :meth:`aclose` leaves it open).
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        model: str | None = None,
        timeout: float = 600,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = _root_url(base_url)
        self.model_id = model or ""
        self._requested_model = model
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            # Drop idle connections well before the upstream does (uvicorn, and so `vllm serve`, closes them after
            # 5 s, httpx's own default): reusing one the server is closing at that moment fails the request.
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64, keepalive_expiry=2.0),
        )
        # Nothing is assumed before start(): every optional feature is off.
        self.capabilities = EngineCapabilities(
            max_model_len=DEFAULT_MAX_MODEL_LEN, logprobs=False, prefix_continuation=False, scoring=False
        )
        self.returns_token_ids = False  # vLLM's return_token_ids: exact per-choice token counts
        self.has_tokenize = False  # vLLM's /tokenize: prompt token counts without generating
        self._inflight = 0
        self.started = False

    @classmethod
    async def connect(cls, base_url: str, **kwargs: Any) -> OpenAIEngine:
        """Construct and :meth:`start` an engine."""
        engine = cls(base_url, **kwargs)
        try:
            await engine.start()
        except BaseException:
            await engine.aclose()
            raise
        return engine

    async def __aenter__(self) -> OpenAIEngine:
        if not self.started:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ start-up

    async def start(self) -> None:
        """Pick the model from ``/v1/models``, read its context length and probe the capabilities."""
        listing = await self._request("GET", "/v1/models", what="the model list (/v1/models)")
        cards = [c for c in (listing.get("data") or []) if isinstance(c, dict) and c.get("id")]
        if not cards:
            raise UpstreamError(f"The upstream server at {self.base_url} serves no models.")
        if self._requested_model:
            card = next((c for c in cards if self._requested_model in (c["id"], c.get("root"))), None)
            if card is None:
                served = ", ".join(str(c["id"]) for c in cards)
                raise NotFoundError(
                    f"The model `{self._requested_model}` is not served by the upstream server at "
                    f"{self.base_url} (it serves: {served}).",
                    param="model",
                )
        else:
            card = cards[0]
        self.model_id = str(card["id"])
        max_model_len = next(
            (card[k] for k in ("max_model_len", "context_length", "max_context_length") if card.get(k)), None
        )

        logprobs, token_ids, prefix, scoring, tokenized = await asyncio.gather(
            self._probe_logprobs(), self._probe_token_ids(), self._probe_prefix(), self._probe_scoring(),
            self._probe_tokenize(),
        )  # fmt: skip
        self.returns_token_ids = token_ids
        self.has_tokenize = tokenized is not None
        if max_model_len is None and tokenized is not None:
            max_model_len = tokenized.get("max_model_len")
        if max_model_len is None:
            log.warning(
                "upstream %s does not report the context length of %s; assuming %d",
                self.base_url,
                self.model_id,
                DEFAULT_MAX_MODEL_LEN,
            )
            max_model_len = DEFAULT_MAX_MODEL_LEN
        self.capabilities = EngineCapabilities(
            max_model_len=int(max_model_len),
            logprobs=logprobs,
            prefix_continuation=prefix,
            scoring=prefix and scoring,
            seed=True,
            penalties=True,
            structured_outputs=True,  # sent as response_format; an upstream that cannot constrain answers a 400
        )
        self.started = True
        log.info(
            "upstream %s model %s: %s, token_ids=%s, tokenize=%s",
            self.base_url,
            self.model_id,
            self.capabilities,
            self.returns_token_ids,
            self.has_tokenize,
        )

    async def _probe(self, path: str, body: dict) -> dict | None:
        """The upstream's answer to a probe, or ``None`` when it refused or failed."""
        try:
            return await self._request("POST", path, body, what=f"a capability probe ({path})")
        except PonderError as exc:
            log.info("capability probe %s failed: %s", path, exc.message)
            return None

    def _probe_chat(self, prefix: bool = False, **extra: Any) -> dict:
        messages = [dict(m) for m in _PROBE_MESSAGES]
        body: dict[str, Any] = {"model": self.model_id, "max_tokens": 1, "temperature": 0.0}
        if prefix:
            messages.append({"role": "assistant", "content": _PROBE_PREFIX})
            body.update(continue_final_message=True, add_generation_prompt=False)
        body["messages"] = messages
        body.update(extra)
        return body

    async def _probe_logprobs(self) -> bool:
        data = await self._probe("/v1/chat/completions", self._probe_chat(logprobs=True, top_logprobs=1))
        choices = (data or {}).get("choices") or [{}]
        return bool(_chat_logprobs(choices[0].get("logprobs")))

    async def _probe_token_ids(self) -> bool:
        data = await self._probe("/v1/chat/completions", self._probe_chat(return_token_ids=True))
        choices = (data or {}).get("choices") or [{}]
        return isinstance(choices[0].get("token_ids"), list) and len(choices[0]["token_ids"]) > 0

    async def _probe_prefix(self) -> bool:
        data = await self._probe("/v1/chat/completions", self._probe_chat(prefix=True, return_prompt_text=True))
        if data is None or not data.get("choices"):
            return False
        rendered = data.get("prompt_text")
        return rendered is None or str(rendered).endswith(_PROBE_PREFIX)

    async def _probe_scoring(self) -> bool:
        data = await self._probe("/v1/chat/completions", self._probe_chat(prefix=True, prompt_logprobs=0))
        if data is None:
            return False
        plps = data.get("prompt_logprobs")
        prompt_tokens = (data.get("usage") or {}).get("prompt_tokens")
        return isinstance(plps, list) and len(plps) > 1 and (prompt_tokens is None or len(plps) == prompt_tokens)

    async def _probe_tokenize(self) -> dict | None:
        data = await self._probe("/tokenize", {"model": self.model_id, "prompt": "Hi"})
        if data is None or not isinstance(data.get("count", data.get("tokens")), int | list):
            return None
        return data

    # ------------------------------------------------------------------ HTTP

    def num_unfinished_requests(self) -> int:
        """Upstream HTTP calls this engine has in flight (a cancelled or closed call leaves none)."""
        return self._inflight

    def _error(self, status: int, payload: Any, text: str, what: str) -> PonderError:
        message, param = _error_message(payload, text)
        if status in (400, 413, 422):
            cls = PromptTooLongError if _is_context_error(message) else InvalidRequestError
            return cls(message, param=param)
        if status in (401, 403):
            return UpstreamError(
                f"The upstream server at {self.base_url} rejected Ponder's API key (HTTP {status}); "
                f"the upstream API key is wrong or missing. Upstream said: {message}"
            )
        if status == 429:
            return OverloadedError(f"The upstream server at {self.base_url} is overloaded (HTTP 429): {message}")
        return UpstreamError(f"The upstream server at {self.base_url} failed on {what} (HTTP {status}): {message}")

    def _transport_error(self, exc: Exception, what: str) -> UpstreamError:
        if isinstance(exc, httpx.TimeoutException):
            return UpstreamError(f"The upstream server at {self.base_url} timed out on {what} ({type(exc).__name__}).")
        return UpstreamError(
            f"Cannot reach the upstream server at {self.base_url} for {what}: {type(exc).__name__}: {exc}"
        )

    async def _request(self, method: str, path: str, body: dict | None = None, *, what: str) -> dict:
        """One upstream call returning its JSON body; upstream failures become Ponder errors."""
        self._inflight += 1
        try:
            try:
                resp = await self._client.request(method, self.base_url + path, json=body, headers=self._headers)
            except httpx.HTTPError as exc:
                raise self._transport_error(exc, what) from exc
            try:
                payload = resp.json()
            except ValueError:
                payload = None
            if resp.status_code >= 400:
                raise self._error(resp.status_code, payload, resp.text, what)
            if not isinstance(payload, dict):
                raise UpstreamError(f"The upstream server at {self.base_url} sent a non-JSON answer to {what}.")
            return payload
        finally:
            self._inflight -= 1

    # ------------------------------------------------------------------ generation

    def _check_started(self) -> None:
        if not self.started:
            raise RuntimeError("OpenAIEngine.start() (or OpenAIEngine.connect()) must be awaited before use")

    def _build(self, prompt: Prompt, params: SamplingParams, n: int, *, stream: bool) -> tuple[str, dict]:
        """The endpoint and request body for a generation."""
        self._check_started()
        body: dict[str, Any] = {
            "model": self.model_id,
            "n": n,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.max_tokens is not None:
            body["max_tokens"] = min(params.max_tokens, params.token_cap or params.max_tokens)
        elif params.token_cap is not None and params.token_cap < self.capabilities.max_model_len:
            body["max_tokens"] = params.token_cap  # a soft cap: _fit_soft_cap trims it to the room the prompt leaves
        # else: omitted, so the upstream generates up to the end of its context
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        if params.presence_penalty:
            body["presence_penalty"] = params.presence_penalty
        if params.frequency_penalty:
            body["frequency_penalty"] = params.frequency_penalty
        if self.returns_token_ids:
            body["return_token_ids"] = True
        _shape(body, prompt, params)
        top_k = params.logprobs
        if top_k is None and not self.returns_token_ids and self.capabilities.logprobs and (stream or n > 1):
            top_k = 0  # only to count each choice's tokens exactly; dropped from the result
        if params.prompt_logprobs is not None:
            raise InvalidRequestError(
                "echo with logprobs needs the prompt's logprobs, which this engine (an upstream server) does not "
                "return; serve with --engine vllm or hf.",
                param="echo",
            )
        if prompt.messages is None:
            path = "/v1/completions"
            body["prompt"] = prompt.text if prompt.text is not None else list(prompt.token_ids or ())
            if top_k is not None:
                body["logprobs"] = top_k
        else:
            path = "/v1/chat/completions"
            messages = [dict(m) for m in prompt.messages or ()]
            if prompt.prefix:
                if not self.capabilities.prefix_continuation:
                    raise InvalidRequestError(
                        "The upstream server cannot continue a partial assistant turn (no continue_final_message).",
                        param="prefix",
                    )
                messages.append({"role": "assistant", "content": prompt.prefix})
                body["continue_final_message"] = True
                body["add_generation_prompt"] = False
            body["messages"] = messages
            if top_k is not None:
                body["logprobs"] = True
                body["top_logprobs"] = top_k
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return path, body

    async def generate(self, prompt: Prompt, params: SamplingParams, n: int = 1) -> list[Sample]:
        if greedy_fan_out(params, n):
            return copies(await self.generate(prompt, params, 1), n)
        if params.deadline is not None:  # a time budget: streamed, so what is generated by the deadline is kept
            return await collect(self.stream(prompt, params, n), params, n)
        check_logprobs(params, self.capabilities)
        path, body = self._build(prompt, params, n, stream=False)
        await self._fit_soft_cap(path, body, params)
        data = await self._request("POST", path, body, what="a generation")
        return self._samples(prompt, params, n, data)

    def _samples(self, prompt: Prompt, params: SamplingParams, n: int, data: dict) -> list[Sample]:
        choices = sorted(
            (c for c in data.get("choices") or [] if isinstance(c, dict)), key=lambda c: int(c.get("index", 0))
        )
        if len(choices) != n:
            raise UpstreamError(f"The upstream server returned {len(choices)} choices for n={n}.")
        usage = data.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        cached = int(((usage.get("prompt_tokens_details") or {}).get("cached_tokens")) or 0)
        in_think = _opens_think(prompt.prefix)
        texts, logprobs, counts = [], [], []
        for choice in choices:
            if prompt.messages is None:
                texts.append(str(choice.get("text") or ""))
                lps = _completion_logprobs(choice.get("logprobs"))
            else:
                reasoning, content = _message_parts(choice.get("message"))
                texts.append(_ReasoningJoiner(in_think=in_think).feed(reasoning, content))
                lps = _chat_logprobs(choice.get("logprobs"))
            logprobs.append(lps)
            token_ids = choice.get("token_ids")
            counts.append(len(token_ids) if isinstance(token_ids, list) else (len(lps) if lps is not None else None))
        total = usage.get("completion_tokens")
        if total is not None:
            total = int(total)
            if n == 1:
                counts = [total]
            elif None in counts or sum(counts) != total:
                weights = [c if c is not None else len(t) for c, t in zip(counts, texts, strict=True)]
                counts = _apportion(total, weights)
        else:
            counts = [c if c is not None else len(t) for c, t in zip(counts, texts, strict=True)]
        want = params.logprobs is not None
        samples = []
        for choice, text, lps, count in zip(choices, texts, logprobs, counts, strict=True):
            stop = choice.get("stop_reason")
            samples.append(
                Sample(
                    text=text,
                    num_tokens=count,
                    finish_reason=_finish_reason(choice.get("finish_reason")),
                    prompt_tokens=prompt_tokens,
                    cached_tokens=cached,
                    logprobs=lps if want else None,
                    cumulative_logprob=sum(t.logprob for t in lps) if want and lps else None,
                    stop_reason=stop if isinstance(stop, str) else None,
                )
            )
        return samples

    async def stream(self, prompt: Prompt, params: SamplingParams, n: int = 1) -> AsyncIterator[SampleDelta]:
        """Deltas as the upstream sends them; closing the iterator closes the HTTP response (the upstream aborts)."""
        if greedy_fan_out(params, n):
            async with contextlib.aclosing(copied_deltas(self.stream(prompt, params, 1), n)) as deltas:
                async for delta in deltas:
                    yield delta
            return
        check_logprobs(params, self.capabilities)
        path, body = self._build(prompt, params, n, stream=True)
        await self._fit_soft_cap(path, body, params)
        reader = _StreamReader(prompt, n, want_logprobs=params.logprobs is not None)
        what = "a streamed generation"
        self._inflight += 1
        try:
            try:
                async with self._client.stream("POST", self.base_url + path, json=body, headers=self._headers) as resp:
                    if resp.status_code >= 400:
                        raw = await resp.aread()
                        try:
                            payload = resp.json()
                        except ValueError:
                            payload = None
                        raise self._error(resp.status_code, payload, raw.decode(errors="replace"), what)
                    async for chunk in _sse_json(resp):
                        if chunk is None:  # [DONE]
                            break
                        if "error" in chunk:
                            err = chunk["error"]
                            status = err.get("code") if isinstance(err, dict) else None
                            raise self._error(status if isinstance(status, int) else 500, chunk, "", what)
                        for delta in reader.feed(chunk):
                            yield delta
            except httpx.HTTPError as exc:
                raise self._transport_error(exc, what) from exc
            last = reader.last()
            if last is None:
                raise UpstreamError(
                    f"The upstream server at {self.base_url} ended the stream before all {n} samples finished."
                )
            yield last
        finally:
            self._inflight -= 1

    # ------------------------------------------------------------------ scoring

    async def score(self, prompt: Prompt, continuation: str) -> list[float]:
        """Logprobs of the continuation's tokens: vLLM's ``prompt_logprobs`` over prompt + continuation.

        The continuation's tokens are those of the whole text past the prompt's own token count (so a
        token that straddles the boundary is scored as part of the continuation).
        """
        self._check_started()
        if not self.capabilities.scoring:
            raise InvalidRequestError(
                "The upstream server cannot score text (it returns no prompt logprobs).", param="verifier"
            )
        if not continuation:
            return []
        if prompt.text is not None:
            path = "/v1/completions"
            full = {"model": self.model_id, "prompt": prompt.text + continuation}
            base = {"model": self.model_id, "prompt": prompt.text}
        else:
            path = "/v1/chat/completions"
            messages = [dict(m) for m in prompt.messages or ()]
            cont = {"continue_final_message": True, "add_generation_prompt": False}
            full = {
                "model": self.model_id,
                "messages": [*messages, {"role": "assistant", "content": prompt.prefix + continuation}],
                **cont,
            }
            if prompt.prefix:
                prefixed = [*messages, {"role": "assistant", "content": prompt.prefix}]
                base = {"model": self.model_id, "messages": prefixed, **cont}
            else:
                base = {"model": self.model_id, "messages": messages, "add_generation_prompt": True}
        full.update(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        base_count, data = await asyncio.gather(
            self._prompt_tokens(path, base), self._request("POST", path, full, what="scoring (prompt_logprobs)")
        )
        plps = data.get("prompt_logprobs")
        if plps is None:
            choices = data.get("choices") or [{}]
            plps = choices[0].get("prompt_logprobs")
        if not isinstance(plps, list):
            raise UpstreamError(f"The upstream server at {self.base_url} returned no prompt logprobs to score with.")
        values = [_prompt_logprob_value(entry) for entry in plps[max(base_count, 1) :]]
        return [v for v in values if v is not None]

    async def _fit_soft_cap(self, path: str, body: dict, params: SamplingParams) -> None:
        """Trim a budget's soft token cap to the context the prompt leaves: the upstream refuses prompt + max_tokens
        beyond its context, where a local engine would just stop there."""
        if params.max_tokens is not None or "max_tokens" not in body:
            return
        keys = ("model", "prompt", "messages", "add_generation_prompt", "continue_final_message", "tools")
        used = await self._prompt_tokens(path, {k: body[k] for k in keys if k in body})
        room = self.capabilities.max_model_len - used
        if room <= 0:
            raise PromptTooLongError(
                f"This model's maximum context length is {self.capabilities.max_model_len} tokens, "
                f"but the prompt has {used} tokens.",
                param="messages",
            )
        body["max_tokens"] = min(body["max_tokens"], room)

    async def _prompt_tokens(self, path: str, body: dict) -> int:
        """Tokens of a prompt: ``/tokenize`` when the upstream has it, else the usage of a one-token generation."""
        if self.has_tokenize:
            data = await self._request("POST", "/tokenize", body, what="tokenization (/tokenize)")
            return int(data["count"]) if "count" in data else len(data.get("tokens") or [])
        data = await self._request("POST", path, {**body, "max_tokens": 1, "temperature": 0.0}, what="token counting")
        return int((data.get("usage") or {}).get("prompt_tokens") or 0)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


async def _sse_json(resp: httpx.Response) -> AsyncIterator[dict | None]:
    """The JSON payloads of a server-sent event stream; ``None`` for ``[DONE]``."""
    data: list[str] = []

    def dispatch() -> dict | None:
        payload = "\n".join(data)
        data.clear()
        if payload.strip() == "[DONE]":
            return None
        try:
            event = json.loads(payload)
        except ValueError as exc:
            raise UpstreamError(f"The upstream server sent an unreadable stream event: {payload[:200]!r}") from exc
        return event if isinstance(event, dict) else {}

    async for line in resp.aiter_lines():
        if not line:
            if data:
                yield dispatch()
            continue
        if line.startswith(":"):
            continue  # comment / keep-alive
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield dispatch()


def _shape(body: dict[str, Any], prompt: Prompt, params: SamplingParams) -> None:
    """The answer's shape in the upstream request: the constraint as ``response_format``; the tools shown to the
    model by the upstream's chat template (``tool_choice: none``: the calls are read here, not there)."""
    if params.structured is not None:
        body["response_format"] = _response_format(params.structured)
    if prompt.tools and prompt.text is None:
        body["tools"], body["tool_choice"] = list(prompt.tools), "none"


def _response_format(structured: StructuredOutput) -> dict[str, Any]:
    """A constraint as the upstream's ``response_format``."""
    if structured.json_object:
        return {"type": "json_object"}
    schema = json.loads(structured.json_schema or "{}")
    return {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
