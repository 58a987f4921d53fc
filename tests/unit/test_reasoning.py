"""The think-tag splitter, whole and incremental."""

from __future__ import annotations

import pytest

from ponder.core.reasoning import ThinkSplitter, split_reasoning


@pytest.mark.parametrize(
    ("text", "reasoning", "content"),
    [
        ("<think>a+b</think>42", "a+b", "42"),
        ("  <think>x</think> y", "x", " y"),
        ("no thinking here", "", "no thinking here"),
        ("<think>cut off mid thought", "cut off mid thought", ""),
        ("answer mentions <think> later", "", "answer mentions <think> later"),
        ("", "", ""),
        ("<thin", "", "<thin"),
    ],
)
def test_split_whole(text, reasoning, content):
    split = split_reasoning(text)
    assert (split.reasoning, split.content) == (reasoning, content)


def test_starts_in_reasoning_when_prompt_opened_the_tag():
    split = split_reasoning("still thinking</think>7", starts_in_reasoning=True)
    assert (split.reasoning, split.content) == ("still thinking", "7")


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8])
def test_incremental_equals_whole_for_any_chunking(size):
    text = "<think>12+30=42\n42*2=84</think>84"
    splitter = ThinkSplitter()
    reasoning = content = ""
    for start in range(0, len(text), size):
        piece = splitter.feed(text[start : start + size])
        reasoning += piece.reasoning
        content += piece.content
    tail = splitter.flush()
    assert (reasoning + tail.reasoning, content + tail.content) == ("12+30=42\n42*2=84", "84")


def test_partial_close_tag_is_held_back_not_leaked():
    splitter = ThinkSplitter()
    assert splitter.feed("<think>abc</th").reasoning == "abc"
    piece = splitter.feed("ink>done")
    assert (piece.reasoning, piece.content) == ("", "done")
