"""The think-tag splitter, whole and incremental."""

from __future__ import annotations

import pytest

from ponder.core.reasoning import Split, ThinkSplitter, split_reasoning


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


@pytest.mark.parametrize(
    ("text", "reasoning", "content"),
    [
        ("</think>333", "", "333"),  # the bundled policy's slip: no opening tag
        ("+2224\n\n\n</think>220", "+2224\n\n\n", "220"),
        ("12+7=19\n</think>19", "12+7=19\n", "19"),
        ("<think>a</think>b", "a", "b"),
        ("no tags at all", "", "no tags at all"),  # nothing says it thought: content
        ("x</think>y</think>z", "x", "y</think>z"),  # only the first closing tag ends reasoning
    ],
)
@pytest.mark.parametrize("size", [1, 3, 100])
def test_a_lone_closing_tag_ends_reasoning_for_a_thinking_model(text, reasoning, content, size):
    whole = split_reasoning(text, implicit_open=True)
    assert (whole.reasoning, whole.content) == (reasoning, content)
    splitter = ThinkSplitter(implicit_open=True)
    pieces = [splitter.feed(text[i : i + size]) for i in range(0, len(text), size)] + [splitter.flush()]
    assert ("".join(p.reasoning for p in pieces), "".join(p.content for p in pieces)) == (reasoning, content)


def test_undecided_text_is_held_back_until_the_closing_tag_or_the_end():
    splitter = ThinkSplitter(implicit_open=True)
    assert splitter.feed("12+7=19\n") == Split()  # reasoning or content: not known yet
    assert splitter.feed("</think>1") == Split("12+7=19\n", "1")
    assert splitter.feed("9") == Split("", "9")
    plain = ThinkSplitter(implicit_open=True)
    assert plain.feed("just an answer") == Split()
    assert plain.flush() == Split("", "just an answer")


def test_a_model_not_known_to_think_keeps_a_lone_closing_tag_as_content():
    assert split_reasoning("</think>333") == Split("", "</think>333")
