"""best_of_n: one batched draw, scored at once or as it finishes; argmax or score-sum per answer; budget cuts."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from ponder.core.errors import InvalidRequestError
from ponder.core.types import Budget, Prompt, SamplingParams
from ponder.strategies import registry
from ponder.strategies.base import StrategyRequest
from ponder.strategies.best_of_n import BestOfN, BestOfNResult, vote_weights
from ponder.strategies.trace import Trace
from ponder.testing import FakeEngine, RulePRM, TableVerifier, after_think, tag

PROMPT = Prompt.chat([{"role": "user", "content": "What is 467+934?"}])


def tagged(answers):
    """Responder: sample ``index`` of a call answers ``answers[index]``, tagged ``#index``."""
    return lambda prompt, params, index: f"<think>try #{index}\n</think>{answers[index]}"


def request(n: int = 1) -> StrategyRequest:
    return StrategyRequest(PROMPT, SamplingParams(temperature=0.8), n=n)


def bon(**options) -> BestOfN:
    return BestOfN.from_request(options)


async def test_picks_the_argmax_score_from_one_engine_call_and_one_verifier_call():
    answers = ["1401", "1301", "1401", "141", "1401", "1300", "1400", "1401"]
    scores = [0.2, 0.3, 0.1, 0.05, 0.4, 0.93, 0.5, 0.35]
    engine, verifier = FakeEngine(tagged(answers)), TableVerifier(scores, key=tag)
    trace = Trace(keep=True)
    result = await bon().run(request(), engine, verifier, Budget(max_samples=8), trace)
    assert [n for _, _, n in engine.calls] == [8]
    assert [len(call) for call in verifier.calls] == [8]
    assert result.spent.samples == 8 and result.spent.verifier_calls == 1
    [best] = result.choices
    assert best.answer == "1300" and best.score == 0.93 and "#5" in best.text
    messages = [e.data.get("message") for e in trace.events if e.data.get("message")]
    assert messages == ["8 candidates scored; best 0.930 for answer 1300"]
    assert isinstance(result, BestOfNResult)
    summary = result.summary()
    assert summary["samples"] == 8 and summary["selection"] == "best"
    assert [(r["answer"], r["count"], r["best_score"]) for r in summary["ranking"][:3]] == [
        ("1300", 1, 0.93),
        ("1400", 1, 0.5),
        ("1401", 4, 0.4),
    ]


async def test_n_best_distinct_answers():
    answers = ["7", "7", "8", "9"]
    engine, verifier = FakeEngine(tagged(answers)), TableVerifier([0.9, 0.8, 0.1, 0.5], key=tag)
    result = await bon(n_samples=4).run(request(n=2), engine, verifier, Budget())
    assert [(c.answer, c.score) for c in result.choices] == [("7", 0.9), ("9", 0.5)]


async def test_weighted_picks_the_largest_score_sum_over_the_single_best_score():
    answers = ["1401", "1301", "1401", "1401", "141"]
    scores = [0.4, 0.9, 0.35, 0.45, 0.2]  # 1401 totals 1.2 against 1301's single 0.9
    trace = Trace(keep=True)
    best = await bon().run(
        request(), FakeEngine(tagged(answers)), TableVerifier(scores, key=tag), Budget(max_samples=5)
    )
    assert best.choices[0].answer == "1301"
    weighted = await bon(selection="weighted").run(
        request(n=2), FakeEngine(tagged(answers)), TableVerifier(scores, key=tag), Budget(max_samples=5), trace
    )
    first, second = weighted.choices
    assert first.answer == "1401" and first.score == 0.45  # represented by its best-scored candidate
    assert second.answer == "1301"
    ranking = weighted.summary()["ranking"]
    assert [(r["answer"], r["count"], r["weight"]) for r in ranking] == [
        ("1401", 3, pytest.approx(1.2)),
        ("1301", 1, 0.9),
        ("141", 1, 0.2),
    ]
    messages = [e.data["message"] for e in trace.events if e.data.get("message")]
    assert messages[-1] == "score totals after 5: 1401 1.20 (x3), 1301 0.90 (x1), 141 0.20 (x1)"


async def test_weighted_maps_raw_logits_through_a_sigmoid():
    answers = ["5", "5", "5", "6"]
    logits = [-1.0, -1.0, -1.0, 0.5]  # summed raw, 5 would total -3; as probabilities 3 x 0.27 > 0.62
    result = await bon(selection="weighted").run(
        request(), FakeEngine(tagged(answers)), TableVerifier(logits, key=tag), Budget(max_samples=4)
    )
    assert result.choices[0].answer == "5"
    assert vote_weights([-1.0, 0.5, None]) == [pytest.approx(0.2689, abs=1e-4), pytest.approx(0.6225, abs=1e-4), 0.0]
    assert vote_weights([0.2, 0.7]) == [0.2, 0.7]  # probabilities are summed as they are
    assert vote_weights([-1.0, 2.0], "identity") == [0.0, 2.0]


async def test_weighted_groups_by_the_chosen_answer_extraction():
    texts = ["The answer is 42.", "42", "It is 41", "41 then", "42!"]
    scores = [0.3, 0.3, 0.5, 0.4, 0.35]

    def responder(prompt, params, index):
        return f"<think>try #{index}\n</think>{texts[index]}"

    by_content = await bon(selection="weighted").run(
        request(), FakeEngine(responder), TableVerifier(scores, key=tag), Budget(max_samples=5)
    )
    assert by_content.choices[0].answer == "It is 41"  # every text differs: the single best wins
    by_number = await bon(selection="weighted", answer_extraction="last_number").run(
        request(), FakeEngine(responder), TableVerifier(scores, key=tag), Budget(max_samples=5)
    )
    assert by_number.choices[0].answer == "42"  # 0.95 in three votes against 41's 0.9 in two
    assert by_number.summary()["ranking"][0]["count"] == 3


@pytest.mark.parametrize(
    ("aggregation", "winner"),
    [("min", "a"), ("prod", "b"), ("last", "c"), ("mean", "d")],
)
async def test_step_verifier_aggregation_decides_the_winner(aggregation, winner):
    solutions = {
        "a": ["0.6", "0.6"],  # min 0.6 is the best minimum
        "b": ["0.55", "0.88"],  # prod 0.484 is the best product
        "c": ["0.1", "0.95"],  # last 0.95 is the best last step
        "d": ["0.3", "1.0", "1.0", "0.9"],  # mean 0.8 is the best mean
    }
    names = list(solutions)

    def responder(prompt, params, index):
        name = names[index]
        return "<think>" + "".join(s + "\n" for s in solutions[name]) + "</think>" + name

    verifier = RulePRM(float, name="steps", steps_only=True)
    result = await bon(aggregation=aggregation).run(request(), FakeEngine(responder), verifier, Budget(max_samples=4))
    assert result.choices[0].answer == winner
    assert len(verifier.calls) == 1 and verifier.calls[0] == [solutions[n] for n in names]
    assert result.choices[0].step_scores == [float(s) for s in solutions[winner]]


async def test_sample_count_follows_options_then_budget_then_default():
    def run(options, budget):
        engine = FakeEngine(tagged([str(i) for i in range(64)]))
        return engine, bon(**options).run(request(), engine, TableVerifier([0.5] * 64, key=tag), budget)

    engine, job = run({}, Budget())
    assert (await job).summary()["samples"] == 16 and [n for _, _, n in engine.calls] == [16]
    engine, job = run({}, Budget(max_samples=4))
    await job
    assert [n for _, _, n in engine.calls] == [4]
    engine, job = run({"n_samples": 6}, Budget(max_samples=64))
    await job
    assert [n for _, _, n in engine.calls] == [6]
    engine, job = run({"n_samples": 32}, Budget(max_samples=5))  # the budget caps the option
    result = await job
    assert [n for _, _, n in engine.calls] == [5] and result.spent.samples == 5 and result.exhausted is None


async def test_chunks_are_scored_as_they_finish_and_kept_when_tokens_run_out():
    # 4 fake tokens per sample; chunks of 2 take 8 tokens: two chunks fit in 20, the third is clamped to 2 each
    def responder(prompt, params, index):
        return f"<think>step #{index}\n two\n</think>{index}"

    calls = []

    def counting(prompt, params, index):
        if index == 0:
            calls.append(params.token_cap)
        return responder(prompt, params, index)

    verifier = TableVerifier([0.1, 0.7], key=tag)
    trace = Trace(keep=True)
    result = await bon(n_samples=8, batch_size=2).run(
        request(), FakeEngine(counting), verifier, Budget(max_tokens=20), trace
    )
    assert result.exhausted == "max_tokens"
    assert calls == [10, 6, 2]  # each chunk clamped to its share of what is left
    assert [len(call) for call in verifier.calls] == [2, 2, 2]
    assert len(result.trace.candidates) == 6 and result.spent.tokens == 20
    best = result.choices[0]
    assert best.finish_reason == "stop" and best.score == 0.7  # finished solutions outrank truncated ones
    messages = [e.data["message"] for e in trace.events if e.data.get("message")]
    assert messages[:2] == [
        "2 candidates scored (2 of 8); best 0.700 for answer 1",
        "2 candidates scored (4 of 8); best 0.700 for answer 1",
    ]
    assert messages[-1].startswith("budget exhausted (max_tokens)")


async def test_time_budget_keeps_the_scored_chunks_with_the_weighted_selection():
    answers = ["3", "4"]
    engine = FakeEngine(tagged(answers), token_delay=0.05)  # ~0.15 s per chunk of 2 (3 tokens)
    result = await bon(n_samples=64, batch_size=2, selection="weighted").run(
        request(),
        engine,
        TableVerifier([0.2, 0.9], key=lambda a: tag(a) if "#" in a else -1, default=0.0),
        Budget(max_seconds=0.8),
    )
    assert result.exhausted == "max_seconds"
    assert 2 <= len(result.trace.candidates) < 64
    assert result.choices[0].answer == "4"
    assert engine.active == 0


def numbered():
    """Responder: every sample of every call gets the next number, its answer and its tag alike."""
    count = iter(range(10_000))

    def respond(prompt, params, index):
        k = next(count)
        return f"<think>try #{k}\n</think>{k}"

    return respond


async def test_stop_score_ends_the_draw_at_the_first_chunk_with_a_confident_candidate():
    scores = {9: 0.95, 13: 0.99}  # sample 9 is in the third chunk of 4
    verifier = TableVerifier(scores, key=tag, default=0.2)
    engine, trace = FakeEngine(numbered()), Trace(keep=True)
    result = await bon(stop_score=0.9).run(request(), engine, verifier, Budget(max_samples=64), trace)
    assert [n for _, _, n in engine.calls] == [4, 4, 4]  # chunks of 4 by default
    assert result.spent.samples == 12 and result.choices[0].answer == "9"
    assert result.summary()["confident"] is True and result.summary()["samples"] == 12
    assert "best score 0.950 >= stop_score 0.9 after 12 candidates" in [e.data.get("message") for e in trace.events]


async def test_stop_score_never_reached_draws_all_n_in_the_chosen_chunks():
    verifier = TableVerifier({5: 0.6}, key=tag, default=0.1)
    engine = FakeEngine(numbered())
    result = await bon(stop_score=0.9, batch_size=8).run(request(), engine, verifier, Budget(max_samples=20))
    assert [n for _, _, n in engine.calls] == [8, 8, 4]
    assert result.choices[0].answer == "5" and result.summary()["confident"] is False


async def test_a_confident_truncated_candidate_does_not_stop_the_draw():
    def respond(prompt, params, index):  # sample 0 runs past max_tokens
        return "<think>#0\na b c d e f g\n</think>0" if index == 0 else f"<think>try #{index}\n</think>{index}"

    verifier = TableVerifier({0: 0.99}, key=tag, default=0.1)
    engine = FakeEngine(respond)
    req = StrategyRequest(PROMPT, SamplingParams(temperature=0.8, max_tokens=5))
    result = await bon(stop_score=0.9).run(req, engine, verifier, Budget(max_samples=8))
    assert [n for _, _, n in engine.calls] == [4, 4] and result.summary()["confident"] is False


async def test_a_seeded_request_draws_each_chunk_with_seeds_of_its_own():
    # engines seed a call's n sequences seed, seed + 1, ...: each call starts past the sequences before it
    engine = FakeEngine(numbered())
    seeded = StrategyRequest(PROMPT, SamplingParams(temperature=0.8, seed=7))
    await bon(batch_size=2).run(seeded, engine, TableVerifier({}, default=0.5), Budget(max_samples=6))
    assert [params.seed for _, params, _ in engine.calls] == [7, 9, 11]
    engine = FakeEngine(numbered())
    await bon(batch_size=2).run(request(), engine, TableVerifier({}, default=0.5), Budget(max_samples=4))
    assert [params.seed for _, params, _ in engine.calls] == [None, None]


def test_needs_a_verifier_and_is_registered():
    assert registry.get("best_of_n") is BestOfN
    with pytest.raises(InvalidRequestError, match="needs a verifier") as err:
        bon().check(FakeEngine(), None)
    assert err.value.param == "verifier"


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"samples": 4}, "samples"),
        ({"n_samples": 0}, "n_samples"),
        ({"n_samples": 100_000}, "n_samples"),
        ({"answer_extraction": "last_word"}, "answer_extraction"),
        ({"selection": "max"}, "selection"),
        ({"aggregation": "median"}, "aggregation"),
        ({"batch_size": 0}, "batch_size"),
        ({"weight_transform": "softmax"}, "weight_transform"),
        ({"stop_score": "high"}, "stop_score"),
    ],
)
def test_bad_options_are_errors(options, field):
    with pytest.raises(ValidationError) as err:
        BestOfN.from_request(options)
    assert err.value.errors()[0]["loc"] == (field,)


class EngineWatchingVerifier(TableVerifier):
    """Records, per call, how many engine calls were still generating when it was asked to score."""

    def __init__(self, engine: FakeEngine, table) -> None:
        super().__init__(table, key=lambda a: after_think(a))
        self.engine = engine
        self.engine_active: list[int] = []

    async def score(self, problem, answers, reference=None):
        self.engine_active.append(self.engine.active)
        return await super().score(problem, answers, reference)


def lengths(texts):
    """Responder: sample ``index`` thinks ``texts[index]`` and answers its index."""
    return lambda prompt, params, index: f"<think>{texts[index]}\n</think>{index}"


async def test_early_finishers_are_scored_while_the_rest_still_generate():
    engine = FakeEngine(lengths(["a", "a b c d e f", "a b"]), token_delay=0.01)
    verifier = EngineWatchingVerifier(engine, {"0": 0.1, "1": 0.9, "2": 0.5})
    trace = Trace(keep=True)
    result = await bon(n_samples=3, score_early=True).run(request(), engine, verifier, Budget(), trace)
    assert [[after_think(a) for a in call] for call in verifier.calls] == [["0"], ["2"], ["1"]]
    assert verifier.engine_active == [1, 1, 0]  # the last one is scored after the call returned
    assert result.choices[0].answer == "1" and result.choices[0].score == 0.9
    assert [c.answer for c in trace.candidates] == ["0", "1", "2"]  # on the trace in sample order
    assert [c.id for c in trace.candidates] == [0, 1, 2]
    assert result.spent.verifier_calls == 3 and result.spent.engine_calls == 1


async def test_by_default_the_solutions_are_scored_once_after_the_call():
    engine = FakeEngine(lengths(["a", "a b c d e f", "a b"]), token_delay=0.01)
    verifier = EngineWatchingVerifier(engine, {"0": 0.1, "1": 0.9, "2": 0.5})
    result = await bon(n_samples=3).run(request(), engine, verifier, Budget())
    assert verifier.engine_active == [0] and len(verifier.calls[0]) == 3
    assert result.choices[0].answer == "1"


async def test_a_solution_cut_by_the_deadline_is_scored_after_the_call():
    engine = FakeEngine(lengths(["a", " ".join(["w"] * 400)]), token_delay=0.005)
    verifier = TableVerifier({"0": 0.3}, default=0.8)
    result = await bon(n_samples=2, score_early=True).run(request(), engine, verifier, Budget(max_seconds=0.5))
    assert result.exhausted == "max_seconds"
    assert verifier.calls[0] == ["<think>a\n</think>0"]
    [[cut]] = verifier.calls[1:]
    assert cut.startswith("<think>w w") and "</think>" not in cut
    scored = {c.finish_reason: c.score for c in result.trace.candidates}
    assert scored == {"stop": 0.3, "length": 0.8}
    assert engine.active == 0


async def test_an_engine_failure_leaves_no_scoring_behind():
    class Failing(FakeEngine):
        async def stream(self, prompt, params, n=1):
            async for delta in super().stream(prompt, params, n):
                if delta.index == 1 and delta.finish_reason:  # sample 0 is being scored by now
                    raise RuntimeError("engine died")
                yield delta

    started, cancelled = asyncio.Event(), asyncio.Event()

    class Slow(TableVerifier):
        async def score(self, problem, answers, reference=None):
            started.set()
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return [0.0] * len(answers)

    engine = Failing(lengths(["a", "a b c"]), token_delay=0.01)
    with pytest.raises(RuntimeError, match="engine died"):
        await bon(n_samples=2, score_early=True).run(request(), engine, Slow({}, default=0.0), Budget())
    await asyncio.sleep(0)
    assert started.is_set() and cancelled.is_set()


@pytest.mark.parametrize("reads_answer", [True, False])
async def test_a_verifier_that_reads_the_answer_gets_it_after_the_steps_and_can_veto_it(reads_answer):
    # every written step is right in all three; one stops a step early, one closes with a wrong answer: only a
    # verifier that reads the answer can tell them from the complete one
    texts = [
        "<think>2*3=6\n</think>6",
        "<think>2*3=6\n2*40=80\n6+80=86\n</think>87",
        "<think>2*3=6\n2*40=80\n6+80=86\n</think>86",
    ]
    verifier = RulePRM(
        {"</think>6": 0.01, "</think>87": 0.02, "</think>86": 0.9}, default=0.95, scores_answer=reads_answer
    )
    engine = FakeEngine(lambda prompt, params, index: texts[index])
    result = await bon().run(request(), engine, verifier, Budget(max_samples=3))
    [call] = verifier.calls
    steps = [["2*3=6"], ["2*3=6", "2*40=80", "6+80=86"], ["2*3=6", "2*40=80", "6+80=86"]]
    if reads_answer:
        assert call == [[*s, "</think>" + a] for s, a in zip(steps, ["6", "87", "86"], strict=True)]
        assert result.choices[0].answer == "86" and result.choices[0].step_scores == [0.95, 0.95, 0.95, 0.9]
    else:
        assert call == steps
        assert result.choices[0].answer == "6"  # every candidate ties at 0.95: the first one wins
