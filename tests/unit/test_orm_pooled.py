"""The token-pooled ORM: its head and soft minimum, the LM reader's features, serving, loading errors."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from ponder.verifiers.hf import VerifierLoadError
from ponder.verifiers.orm_pooled import (
    EMPTY_SCORE,
    FEATURES,
    TOKEN_MIN,
    PoolingHead,
    SurprisalReader,
    TokenPooledORM,
    open_orm,
    softmin,
)
from tests.unit.test_verifiers_models import ANSWERS, build_model

QUESTION = [{"role": "user", "content": "State the final answer to the following arithmetic problem: 2 + 3 - 1 ="}]
HEAD = PoolingHead((0.5, 0.25, -1.0, 0.75), 0.1, 0.3)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sidecar = {"kind": "orm", "format": TOKEN_MIN, "number_order": "as_written", "head": HEAD.to_sidecar()}
    return build_model(tmp_path_factory.mktemp("pooled") / "orm", "ForCausalLM", sidecar=sidecar)


@pytest.fixture(scope="module")
def orm(folder: Path) -> TokenPooledORM:
    return TokenPooledORM(folder, device="cpu")


def test_softmin_tends_to_the_minimum_and_skips_masked_positions() -> None:
    import torch

    values = torch.tensor([[3.0, -1.0, 2.0], [5.0, 4.0, -9.0]])
    assert softmin(values, 1e-3).tolist() == pytest.approx([-1.0, -9.0], abs=1e-2)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    assert softmin(values, 1e-3, mask).tolist() == pytest.approx([-1.0, 4.0], abs=1e-2)
    # a soft minimum sits below the hard one: every token can only pull the score down
    assert float(softmin(values[0], 1.0)) < -1.0
    assert float(softmin(torch.tensor([2.5]), 0.3)) == pytest.approx(2.5)


def test_pooling_head_checks_its_numbers_and_round_trips_through_the_sidecar() -> None:
    assert PoolingHead.from_sidecar(json.loads(json.dumps(HEAD.to_sidecar()))) == HEAD
    with pytest.raises(ValueError, match="4 finite weights"):
        PoolingHead((1.0, 2.0), 0.0, 0.3)
    with pytest.raises(ValueError, match="finite"):
        PoolingHead((1.0, 2.0, 3.0, math.nan), 0.0, 0.3)
    with pytest.raises(ValueError, match="temperature must be positive"):
        PoolingHead((1.0, 2.0, 3.0, 4.0), 0.0, 0.0)
    with pytest.raises(ValueError, match="features"):
        PoolingHead.from_sidecar({**HEAD.to_sidecar(), "features": ["logprob"]})


def test_features_are_the_lms_prediction_of_each_answer_token(orm: TokenPooledORM) -> None:
    """logprob, best logprob and entropy from one plain forward pass; the step's logprob restarts after a newline."""
    import torch

    reader = orm.reader
    answer = ANSWERS[0]
    (features,) = reader.read([(QUESTION, answer)])
    ids, start = reader.encode(QUESTION, answer)
    assert reader.tokenizer.decode(ids[start:]) == answer
    with torch.inference_mode():
        logprobs = reader.model(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)
    expected = [float(logprobs[t - 1, ids[t]]) for t in range(start, len(ids))]
    assert features.shape == (len(ids) - start, len(FEATURES))
    assert features[:, 0].tolist() == pytest.approx(expected, abs=1e-4)
    assert features[:, 1].tolist() == pytest.approx(logprobs[start - 1 : -1].max(-1).values.tolist(), abs=1e-4)
    assert bool((features[:, 1] >= features[:, 0] - 1e-6).all()) and bool((features[:, 2] >= 0).all())
    tokens = [reader.tokenizer.decode([i]) for i in ids[start:]]
    after_newline = [k + 1 for k, text in enumerate(tokens[:-1]) if "\n" in text]
    assert after_newline  # the answer has two steps
    for k in after_newline:
        assert float(features[k, 3]) == pytest.approx(float(features[k, 0]), abs=1e-5)
    assert float(features[1, 3]) == pytest.approx(float(features[0, 0] + features[1, 0]), abs=1e-5)


def plain_logprobs(reader, problem, answer: str) -> tuple[list[float], list[float]]:
    """Each answer token's logprob, and the best logprob there, from one plain forward pass over the pair."""
    import torch

    ids, start = reader.encode(problem, answer)
    with torch.inference_mode():
        logprobs = reader.model(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)
    taken = [float(logprobs[t - 1, ids[t]]) for t in range(start, len(ids))]
    return taken, logprobs[start - 1 : -1].max(-1).values.tolist()


def test_answers_read_together_equal_one_plain_pass_each(folder: Path) -> None:
    """Continuing from the cached question and one pass over a question's common prefix changes nothing; nor does
    the padding of a batch."""
    reader = TokenPooledORM(folder, device="cpu").reader  # its own cache of questions
    other = [{"role": "user", "content": "What is 7*8?"}]
    # the second question's answers share their first step: the shared pass then runs into the answers
    alike = ["<think>7*8=56\n</think>56", "<think>7*8=56\n56+0=56\n</think>56", "<think>7*8=54\n</think>54"]
    items = [(QUESTION, a) for a in ANSWERS] + [(other, a) for a in alike]
    first = reader.read(items)
    assert (reader.tree_reader.misses, reader.tree_reader.hits) == (2, 0)
    again = reader.read(items)  # both questions held: only the answers are read
    assert (reader.tree_reader.misses, reader.tree_reader.hits) == (2, 2)
    lone = [{"role": "user", "content": "What is 9+9?"}]
    items.append((lone, "<think>9+9=18\n</think>18"))  # read whole with its question, then from it
    first.extend(reader.read(items[-1:]))
    again.extend(reader.read(items[-1:]))
    assert (reader.tree_reader.misses, reader.tree_reader.hits) == (3, 3)
    for (problem, answer), features, same in zip(items, first, again, strict=True):
        assert features.flatten().tolist() == pytest.approx(same.flatten().tolist(), abs=1e-4)
        taken, best = plain_logprobs(reader, problem, answer)
        assert features[:, 0].tolist() == pytest.approx(taken, abs=1e-4)
        assert features[:, 1].tolist() == pytest.approx(best, abs=1e-4)


def test_answers_longer_than_the_context_keep_their_end_and_share_nothing(orm: TokenPooledORM) -> None:
    """Cut from the left to fit, two long answers to one question need not share a first token: each reads alone."""
    reader = orm.reader
    long = ["<think>" + "1+1=2\n" * 60 + "</think>2", "<think>" + "2+2=4\n" * 60 + "</think>4"]
    (a, start_a), (b, _) = (reader.encode(QUESTION, text) for text in long)
    assert len(a) == reader.max_len and start_a == 1 and a[0] != b[0]
    together = reader.read([(QUESTION, text) for text in long])
    for text, features in zip(long, together, strict=True):
        (alone,) = reader.read([(QUESTION, text)])
        assert features.shape == (reader.max_len - 1, len(FEATURES))
        assert features.flatten().tolist() == pytest.approx(alone.flatten().tolist(), abs=1e-4)


async def test_scores_pool_the_features_with_the_head(orm: TokenPooledORM) -> None:
    scores = await orm.score(QUESTION, [*ANSWERS, ANSWERS[0], ""])
    features = orm.reader.read([(QUESTION, a) for a in ANSWERS])
    assert scores[: len(ANSWERS)] == pytest.approx([float(HEAD.pool(f)) for f in features], abs=1e-5)
    assert scores[len(ANSWERS)] == scores[0]  # a repeated answer is read once and scored alike
    assert scores[-1] == EMPTY_SCORE < min(scores[:-1])


def test_open_orm_picks_the_class_by_the_sidecar_and_refuses_a_broken_head(folder: Path, tmp_path: Path) -> None:
    from ponder.verifiers.registry import load_verifier, parse_spec

    assert isinstance(open_orm(folder, device="cpu"), TokenPooledORM)
    assert isinstance(load_verifier(parse_spec(f"mine={folder}")), TokenPooledORM)
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    sidecar = json.loads((broken / "ponder.json").read_text())
    (broken / "ponder.json").write_text(json.dumps({**sidecar, "head": {**sidecar["head"], "temperature": -1}}))
    with pytest.raises(VerifierLoadError, match="temperature must be positive"):
        TokenPooledORM(broken, device="cpu")
    (broken / "ponder.json").write_text(json.dumps({**sidecar, "format": "sequence_classification"}))
    with pytest.raises(VerifierLoadError, match="does not describe a token_min ORM"):
        TokenPooledORM(broken, device="cpu")


def test_reversed_number_order_is_what_the_reader_sees(folder: Path) -> None:
    reader = SurprisalReader(folder, number_order="reversed", device="cpu")
    ids, start = reader.encode([{"role": "user", "content": "What is 467+914?"}], "<think>467+914=1381\n</think>1381")
    text = reader.tokenizer.decode(ids)
    assert "764+419" in text and text.endswith("<think>764+419=1831\n</think>1831")
    assert reader.tokenizer.decode(ids[start:]) == "<think>764+419=1831\n</think>1831"
