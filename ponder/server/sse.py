"""Server-sent-event framing and merging of several async streams into one."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
DONE = "data: [DONE]\n\n"
_END = object()


def sse(data: Any) -> str:
    """One ``data:`` event carrying ``data`` as compact JSON."""
    return f"data: {json.dumps(data, separators=(',', ':'), ensure_ascii=False)}\n\n"


async def merge_streams(streams: Sequence[AsyncIterator[T]]) -> AsyncIterator[tuple[int, T]]:
    """Items of all ``streams`` as they come, tagged with the stream's position.

    Closing the merged iterator cancels the readers, which closes every stream.
    """
    if len(streams) == 1:  # the common case needs no tasks
        try:
            async for item in streams[0]:
                yield 0, item
        finally:
            await streams[0].aclose()
        return

    queue: asyncio.Queue = asyncio.Queue()

    async def pump(k: int, stream: AsyncIterator[T]) -> None:
        try:
            async for item in stream:
                await queue.put((k, item))
        except Exception as exc:  # surfaced to the consumer below
            await queue.put((k, exc))
        finally:
            await stream.aclose()
            await queue.put((k, _END))

    tasks = [asyncio.create_task(pump(k, s)) for k, s in enumerate(streams)]
    try:
        remaining = len(tasks)
        while remaining:
            k, item = await queue.get()
            if item is _END:
                remaining -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield k, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
