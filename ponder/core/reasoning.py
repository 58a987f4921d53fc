"""Split ``<think>...</think>`` reasoning from the visible answer, whole or incrementally while streaming."""

from __future__ import annotations

from dataclasses import dataclass

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
THINK_TAGS = (THINK_OPEN, THINK_CLOSE)  # the one definition; models may override theirs in ponder.json


@dataclass
class Split:
    """Reasoning and visible content of some text."""

    reasoning: str = ""
    content: str = ""


def split_reasoning(text: str, *, starts_in_reasoning: bool = False, implicit_open: bool = False) -> Split:
    """Split a whole completion; an unclosed ``<think>`` makes everything after it reasoning, and with
    ``implicit_open`` text before a lone ``</think>`` is reasoning too (see :class:`ThinkSplitter`)."""
    splitter = ThinkSplitter(starts_in_reasoning=starts_in_reasoning, implicit_open=implicit_open)
    first = splitter.feed(text)
    rest = splitter.flush()
    return Split(first.reasoning + rest.reasoning, first.content + rest.content)


def _partial_tag_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


class ThinkSplitter:
    """Incremental splitter: feed deltas, get reasoning/content deltas; tags split across deltas are held back.

    Reasoning is recognised when the output opens with ``<think>`` (after whitespace), or when the prompt
    already opened it (``starts_in_reasoning``): a model that merely mentions the opening tag later in its
    answer keeps it as content. With ``implicit_open`` (a model known to think, whose chat template may open
    the block in the prompt), output that does not open with ``<think>`` is reasoning up to a lone
    ``</think>`` and content after it, as vLLM's ``deepseek_r1`` and ``qwen3`` reasoning parsers read it;
    output with no ``</think>`` at all stays content. Until that tag or the end comes, such output cannot be
    told apart, so it is held back: streamed, it arrives when the tag does (or at the end).
    """

    def __init__(self, *, starts_in_reasoning: bool = False, implicit_open: bool = False) -> None:
        self._state = "reasoning" if starts_in_reasoning else "start"
        self._implicit = implicit_open
        self._pending = ""
        self._fed = 0  # characters fed so far
        self.content_start: int | None = None  # where the answer begins in what was fed, once that is known

    @property
    def decided(self) -> int:
        """Characters fed and told apart (reasoning, answer or tags); the rest is held back."""
        return self._fed - len(self._pending)

    def _answer_from_here(self) -> None:
        self._state = "content"
        self.content_start = self.decided

    def feed(self, text: str) -> Split:
        self._pending += text
        self._fed += len(text)
        out = Split()
        while self._pending:
            if self._state == "start":
                stripped = self._pending.lstrip()
                if stripped.startswith(THINK_OPEN):
                    self._pending = stripped[len(THINK_OPEN) :]
                    self._state = "reasoning"
                elif THINK_OPEN.startswith(stripped):  # could still become the tag
                    break
                elif self._implicit:
                    self._state = "undecided"
                else:
                    self._answer_from_here()
            elif self._state == "undecided":  # reasoning if a lone </think> comes, content if none does
                end = self._pending.find(THINK_CLOSE)
                if end == -1:
                    break
                out.reasoning += self._pending[:end]
                self._pending = self._pending[end + len(THINK_CLOSE) :]
                self._answer_from_here()
            elif self._state == "reasoning":
                end = self._pending.find(THINK_CLOSE)
                if end != -1:
                    out.reasoning += self._pending[:end]
                    self._pending = self._pending[end + len(THINK_CLOSE) :]
                    self._answer_from_here()
                    continue
                hold = _partial_tag_suffix(self._pending, THINK_CLOSE)
                out.reasoning += self._pending[: len(self._pending) - hold]
                self._pending = self._pending[len(self._pending) - hold :]
                break
            else:
                out.content += self._pending
                self._pending = ""
        return out

    def flush(self) -> Split:
        """Whatever was held back, at the end of the stream."""
        if self._state == "reasoning":
            pending, self._pending = self._pending, ""
            return Split(reasoning=pending)
        if self.content_start is None:
            self._answer_from_here()
        pending, self._pending = self._pending, ""
        return Split(content=pending)


def thinking_chars(text: str, *, starts_in_reasoning: bool = False, implicit_open: bool = False) -> int:
    """How many leading characters of a completion are thinking: through the closing tag, all of them when it
    never closed, none without a think block."""
    splitter = ThinkSplitter(starts_in_reasoning=starts_in_reasoning, implicit_open=implicit_open)
    splitter.feed(text)
    splitter.flush()
    return len(text) if splitter.content_start is None else splitter.content_start
