"""ponder eval run specs: --run parsing, sweeps, runs files, and how a spec splits into SDK kwargs and extra_body."""

from __future__ import annotations

import json

import pytest

from ponder.eval.specs import RunSpec, SpecError, build_runs, parse_run, parse_sweep, split_top


def test_split_top_keeps_json_commas_together():
    assert split_top('a=1,b={"x":1,"y":[1,2]},c="p,q"') == ["a=1", 'b={"x":1,"y":[1,2]}', 'c="p,q"']


def test_parse_run_values_are_json_or_text_and_keys_nest():
    run = parse_run(
        'bon:strategy=best_of_n,budget.max_samples=16,temperature=0.8,strategy_options={"k":4,"x":[1,2]},'
        "return_trace=true",
        defaults={"max_tokens": 160},
    )
    assert run.name == "bon" and run.series == "bon"
    assert run.body == {
        "max_tokens": 160,
        "strategy": "best_of_n",
        "budget": {"max_samples": 16},
        "temperature": 0.8,
        "strategy_options": {"k": 4, "x": [1, 2]},
        "return_trace": True,
    }


def test_aliases_hyphens_raw_fields_and_unsetting_a_default():
    run = parse_run(
        "r:budget-samples=4,budget_tokens=100,body.custom_field=7,max_tokens=null",
        defaults={"max_tokens": 160, "budget": {"max_seconds": 5}},
    )
    assert run.body == {"budget": {"max_seconds": 5, "max_samples": 4, "max_tokens": 100}, "custom_field": 7}


def test_request_kwargs_split_sdk_fields_from_extensions():
    run = RunSpec(
        "r",
        {
            "temperature": 0,
            "max_tokens": 9,
            "reasoning_effort": "low",
            "strategy": "none",
            "budget": {"max_samples": 2},
        },
    )
    kwargs, extra = run.request_kwargs()
    assert kwargs == {"temperature": 0, "max_tokens": 9, "reasoning_effort": "low"}
    assert extra == {"strategy": "none", "budget": {"max_samples": 2}}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("r:temprature=0", "unknown request field 'temprature'"),
        ("r:budget.samples=3", "unknown budget field 'samples'"),
        ("r:temperature", "expected key=value"),
        ("r:stream=true", "stream is not supported"),
        ("bad name:temperature=0", "run name"),
        ("r:strategy_options=3", "strategy_options must be a JSON object"),
        ("r:budget=16", "budget must be an object"),
        ("r:temperature.x=1", "has no sub-fields"),
    ],
)
def test_bad_specs_are_clear_errors(text, message):
    with pytest.raises(SpecError, match=message):
        parse_run(text)


def test_sweep_parsing():
    assert parse_sweep("budget.max_samples=1,4,16,64") == ("budget.max_samples", [1, 4, 16, 64])
    assert parse_sweep("strategy=none,best_of_n") == ("strategy", ["none", "best_of_n"])
    with pytest.raises(SpecError, match="no values"):
        parse_sweep("temperature=")
    with pytest.raises(SpecError, match="unknown request field"):
        parse_sweep("tmp=1,2")


def test_build_runs_sweeps_every_run_and_names_points():
    runs = build_runs(
        {"strategy": "best_of_n", "max_tokens": 160},
        ["bon", "sc:strategy=self_consistency"],
        ["budget.max_samples=1,4,16,64"],
    )
    assert [r.name for r in runs] == [
        *(f"bon.max_samples={k}" for k in (1, 4, 16, 64)),
        *(f"sc.max_samples={k}" for k in (1, 4, 16, 64)),
    ]
    assert {r.series for r in runs} == {"bon", "sc"}
    assert runs[2].label == "max_samples=16"
    assert runs[2].body == {"strategy": "best_of_n", "max_tokens": 160, "budget": {"max_samples": 16}}
    assert runs[7].body["strategy"] == "self_consistency" and runs[7].body["budget"] == {"max_samples": 64}


def test_two_sweeps_make_a_product_and_no_runs_means_one_default_run():
    runs = build_runs({}, [], ["temperature=0,0.8", "n=1,2"], default_name="base")
    assert [r.name for r in runs] == ["base.temperature=0,n=1", "base.temperature=0,n=2", "base.temperature=0.8,n=1",
                                      "base.temperature=0.8,n=2"]  # fmt: skip
    assert [(r.series, r.label) for r in runs] == [
        ("base.temperature=0", "n=1"),
        ("base.temperature=0", "n=2"),
        ("base.temperature=0.8", "n=1"),
        ("base.temperature=0.8", "n=2"),
    ]  # one plot line per temperature, its points along the last sweep
    assert build_runs({"temperature": 0}, [], [])[0].body == {"temperature": 0}


def test_duplicate_names_are_refused():
    with pytest.raises(SpecError, match="two runs are named 'a'"):
        build_runs({}, ["a:temperature=0", "a:temperature=1"], [])


def test_runs_file_json_with_defaults_own_sweep_and_global_sweep(tmp_path):
    path = tmp_path / "runs.json"
    path.write_text(
        json.dumps(
            {
                "defaults": {"max_tokens": 100, "budget": {"max_seconds": 30}},
                "sweep": {"temperature": [0.5, 1.0]},
                "runs": [
                    {"name": "greedy", "temperature": 0},
                    {
                        "name": "bon",
                        "series": "best-of-n",
                        "strategy": "best_of_n",
                        "sweep": {"budget.max_samples": [2, 8]},
                    },
                ],
            }
        )
    )
    runs = build_runs({"max_tokens": 160}, ["extra:n=2"], [], runs_file=str(path))
    assert [(r.series, r.label) for r in runs[2:6]] == [
        ("best-of-n.max_samples=2", "temperature=0.5"),
        ("best-of-n.max_samples=2", "temperature=1.0"),
        ("best-of-n.max_samples=8", "temperature=0.5"),
        ("best-of-n.max_samples=8", "temperature=1.0"),
    ]  # a run's own sweep splits it into lines along the file's sweep
    assert runs[0].series == "greedy"
    names = [r.name for r in runs]
    assert names == [
        "greedy.temperature=0.5",
        "greedy.temperature=1.0",
        "bon.max_samples=2.temperature=0.5",
        "bon.max_samples=2.temperature=1.0",
        "bon.max_samples=8.temperature=0.5",
        "bon.max_samples=8.temperature=1.0",
        "extra.temperature=0.5",
        "extra.temperature=1.0",
    ]
    bon = runs[4]
    assert bon.series == "best-of-n.max_samples=8"
    assert bon.body == {
        "max_tokens": 100,
        "budget": {"max_seconds": 30, "max_samples": 8},
        "strategy": "best_of_n",
        "temperature": 0.5,
    }
    assert runs[-1].body["max_tokens"] == 160  # --run takes the flags' defaults, not the file's


def test_runs_file_yaml_and_a_plain_list(tmp_path):
    pytest.importorskip("yaml")
    path = tmp_path / "runs.yaml"
    path.write_text("- name: a\n  temperature: 0\n- name: b\n  budget: {max_samples: 4}\n")
    runs = build_runs({}, [], [], runs_file=str(path))
    assert [(r.name, r.body) for r in runs] == [("a", {"temperature": 0}), ("b", {"budget": {"max_samples": 4}})]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "invalid JSON"),
        ('{"runs": []}', "non-empty 'runs' list"),
        ('{"runs": [{"temperature": 0}]}', "needs a 'name'"),
        ('{"runs": [{"name": "a", "temprature": 0}]}', "unknown request field"),
        ('{"runz": [{"name": "a"}]}', "unknown top-level key"),
        ('{"runs": [{"name": "a", "sweep": {"n": 3}}]}', "non-empty list"),
    ],
)
def test_bad_runs_files(tmp_path, content, message):
    path = tmp_path / "runs.json"
    path.write_text(content)
    with pytest.raises(SpecError, match=message):
        build_runs({}, [], [], runs_file=str(path))


def test_missing_runs_file():
    with pytest.raises(SpecError, match="cannot read runs file"):
        build_runs({}, [], [], runs_file="/nonexistent/runs.json")


def test_null_unsets_a_request_field_but_is_a_value_inside_strategy_options():
    from ponder.eval.specs import merge

    base = {"temperature": 0.7, "strategy_options": {"round_size": 4}, "budget": {"max_samples": 4}}
    body = merge(
        base, {"temperature": None, "budget": {"max_samples": None}, "strategy_options": {"stop_agreement": None}}
    )
    assert body == {"strategy_options": {"round_size": 4, "stop_agreement": None}}
