"""Send every problem of every run through the openai SDK (a remote server or the app in process) and grade it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ponder.eval.specs import RunSpec
from ponder.tasks import Problem, grade

IN_PROCESS_URL = "http://ponder.in-process"


@dataclass
class Target:
    """Where requests go: ``base_url`` of a running server, or ``settings`` for the app built in this process."""

    base_url: str | None = None
    api_key: str | None = None
    settings: Any = None  # ponder.server.settings.ServerSettings for in-process runs
    model_name: str | None = None
    timeout: float = 600.0
    max_retries: int = 0


@contextlib.asynccontextmanager
async def open_client(target: Target) -> AsyncIterator[Any]:
    """An ``AsyncOpenAI`` client; in process it talks to ``create_app`` through ``httpx.ASGITransport``.

    ASGITransport sends no lifespan events, so the app's lifespan (engine start and stop) is entered here.
    """
    import httpx
    from openai import AsyncOpenAI

    if target.base_url:
        client = AsyncOpenAI(
            base_url=target.base_url,
            api_key=target.api_key or "unused",
            timeout=target.timeout,
            max_retries=target.max_retries,
        )
        try:
            yield client
        finally:
            await client.close()
        return

    from ponder.server.app import create_app

    app = create_app(target.settings)
    async with app.router.lifespan_context(app):
        # raise_app_exceptions=False: a crash inside the app becomes its 500 response, recorded like over HTTP.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=IN_PROCESS_URL, timeout=target.timeout) as http:
            client = AsyncOpenAI(
                base_url=f"{IN_PROCESS_URL}/v1",
                api_key=target.api_key or "unused",
                http_client=http,
                max_retries=target.max_retries,
            )
            yield client


async def resolve_model(client: Any, name: str | None) -> str:
    """``name``, else the first model the server lists."""
    if name:
        return name
    models = await client.models.list()
    if not models.data:
        raise RuntimeError("the server lists no models; pass --model-name")
    return models.data[0].id


def error_text(exc: BaseException) -> str:
    """``HTTP 400: message`` for an API error, else the exception's type and text."""
    from openai import APIStatusError

    if isinstance(exc, APIStatusError):
        body = exc.body
        message = None
        if isinstance(body, dict):
            inner = body.get("error") if isinstance(body.get("error"), dict) else body
            message = inner.get("message")
        return f"HTTP {exc.status_code}: {message or exc.message}"
    return f"{type(exc).__name__}: {exc}"


def _extra(obj: Any, key: str) -> Any:
    extra = getattr(obj, "model_extra", None) or {}
    return extra.get(key)


def _blank_row(problem: Problem, run: RunSpec, kwargs: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """A problem's row before its answer: what was asked, and every answer field empty."""
    return {
        "run": run.name,
        "split": problem.split,
        "seed": problem.seed,
        "level": problem.level,
        "task": problem.task,
        "question": problem.question,
        "reference": problem.answer,
        "answer": None,
        "reasoning": None,
        "correct": False,
        "score": 0.0,
        "finish_reason": None,
        "choices": 0,
        "choices_correct": 0,
        "prompt_tokens": None,
        "completion_tokens": None,
        "reasoning_tokens": None,
        "spent": None,
        # what a learned router trains on: the run's strategy, verifier and budget, and compute_optimal's probe
        "request": _routing_request(kwargs, extra),
        "probe": None,
        "routed_to": None,
        "latency_s": None,
        "error": None,
    }


async def ask(client: Any, model: str, problem: Problem, run: RunSpec) -> dict[str, Any]:
    """One problem through one run's request settings: the graded row (an API error is recorded, not raised)."""
    kwargs, extra = run.request_kwargs()
    row = _blank_row(problem, run, kwargs, extra)
    started = time.perf_counter()
    try:
        resp = await client.chat.completions.create(
            model=model, messages=problem.prompt_messages(), **kwargs, extra_body=extra or None
        )
    except Exception as exc:  # every failure of one problem is a row, never the end of the run
        row["latency_s"] = time.perf_counter() - started
        row["error"] = error_text(exc)
        return row
    row["latency_s"] = time.perf_counter() - started
    if not resp.choices:
        row["error"] = "the response has no choices"
        return row
    choice = resp.choices[0]
    answer = choice.message.content
    score = grade(problem, answer)
    usage = resp.usage
    details = getattr(usage, "completion_tokens_details", None) if usage else None
    ponder = _extra(resp, "ponder") or {}
    row.update(
        answer=answer,
        reasoning=_extra(choice.message, "reasoning_content"),
        correct=score >= 1.0,
        score=score,
        finish_reason=choice.finish_reason,
        choices=len(resp.choices),
        # with n > 1 every choice is graded too, for pass@n; ``correct`` stays about choice 0, what a user reads
        choices_correct=sum(grade(problem, c.message.content) >= 1.0 for c in resp.choices),
        prompt_tokens=usage.prompt_tokens if usage else None,
        completion_tokens=usage.completion_tokens if usage else None,
        reasoning_tokens=getattr(details, "reasoning_tokens", None) if details else None,
        spent=ponder.get("spent"),
        probe=ponder.get("probe") or None,
        routed_to=ponder.get("routed_to"),
    )
    return row


def _routing_request(kwargs: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """The request fields that say which arm a row measured."""
    fields = {**kwargs, **extra}
    keys = ("strategy", "strategy_options", "verifier", "budget", "reasoning_effort", "temperature", "max_tokens")
    return {k: fields[k] for k in keys if k in fields}


async def run_one(
    client: Any, model: str, problems: list[Problem], run: RunSpec, concurrency: int, progress: bool = True
) -> tuple[list[dict[str, Any]], float]:
    """All problems of one run, at most ``concurrency`` in flight; rows in problem order, and the wall seconds."""
    from tqdm.auto import tqdm

    gate = asyncio.Semaphore(concurrency)
    bar = tqdm(total=len(problems), desc=run.name, unit="problem", disable=not progress, leave=True)
    tally = {"done": 0, "correct": 0, "errors": 0}

    async def one(index: int, problem: Problem) -> dict[str, Any]:
        async with gate:
            row = await ask(client, model, problem, run)
        row = {"run": row.pop("run"), "index": index, **row}
        tally["done"] += 1
        tally["correct"] += row["correct"]
        tally["errors"] += row["error"] is not None
        bar.set_postfix(acc=f"{tally['correct'] / tally['done']:.1%}", errors=tally["errors"], refresh=False)
        bar.update(1)
        return row

    started = time.perf_counter()
    try:
        rows = await asyncio.gather(*(one(i, p) for i, p in enumerate(problems)))
    finally:
        bar.close()
    return list(rows), time.perf_counter() - started


async def warm_up(client: Any, model: str, problems: list[Problem], count: int, max_tokens: int | None) -> None:
    """Throw-away requests before timing (the first generation of a fresh engine is far slower)."""
    for problem in problems[:count]:
        with contextlib.suppress(Exception):
            await client.chat.completions.create(
                model=model, messages=problem.prompt_messages(), max_tokens=max_tokens or 16, temperature=0
            )
