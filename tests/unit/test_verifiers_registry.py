"""``--verifier`` spec parsing, kind detection, loading, and the ``VerifierSet`` (lookup, default, errors)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ponder.core.errors import InvalidRequestError
from ponder.core.types import EngineCapabilities
from ponder.testing import FakeEngine
from ponder.verifiers.hf import VerifierLoadError
from ponder.verifiers.registry import (
    UnknownVerifierError,
    VerifierSet,
    VerifierSpec,
    VerifierSpecError,
    default_verifiers,
    detect_kind,
    load_verifier,
    parse_spec,
)


def test_parse_spec_grammar(tmp_path) -> None:
    assert parse_spec("prm=models/prm") == VerifierSpec("prm", "models/prm")
    assert parse_spec(" orm = models/orm:orm ") == VerifierSpec("orm", "models/orm", "orm")
    assert parse_spec("shepherd=/m/ms:prm-step-tag") == VerifierSpec("shepherd", "/m/ms", "prm-step-tag")
    assert parse_spec("p=models/prm:prm,agg=last,device=cpu") == VerifierSpec(
        "p", "models/prm", "prm", {"agg": "last", "device": "cpu"}
    )
    assert parse_spec("safety=policy.yaml:policy") == VerifierSpec("safety", "policy.yaml", "policy")
    assert parse_spec("rule=math_rule") == VerifierSpec("rule", "math_rule", "math_rule")
    assert parse_spec("llm_judge") == VerifierSpec("llm_judge", "llm_judge", "llm_judge")
    mix = parse_spec("mix=ensemble:prm*0.7+orm*0.3")
    assert (mix.kind, mix.members) == ("ensemble", (("prm", 0.7), ("orm", 0.3)))
    assert parse_spec("raw=ensemble-raw: prm + orm * -0.5").members == (("prm", 1.0), ("orm", -0.5))
    odd = tmp_path / "dir:with:colons"
    odd.mkdir()
    assert parse_spec(f"x={odd}") == VerifierSpec("x", str(odd))  # an existing path wins over a kind suffix


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty --verifier spec; expected NAME=PATH"),
        (
            "models/prm",
            r"expected NAME=PATH\[:KIND\] \(e\.g\. prm=models/prm\) or a built-in \(math_rule, calculator, llm_judge\)",
        ),
        ("9x=models/prm", "invalid name '9x'"),
        ("prm=", "nothing after '='"),
        (
            "prm=models/prm:reward",
            "unknown kind 'reward'; valid kinds: orm, prm, prm-generative, prm-step-tag, prm-qwen, policy",
        ),
        ("prm=models/prm:math_rule", "unknown kind 'math_rule'"),
        ("prm=models/prm:prm,agg=max", "unknown aggregation 'max'; valid: min, prod, last, mean"),
        ("prm=models/prm:prm,temperature=1", "bad option 'temperature=1' for kind prm; valid options: agg=VALUE"),
        ("orm=models/orm:orm,agg=min", "bad option 'agg=min' for kind orm; valid options: device=VALUE"),
        ("p=x.yaml:policy,device=cpu", "bad option 'device=cpu' for kind policy; valid options: none"),
        ("prm=models/prm:prm,threads=0", "threads must be a whole number from 1 to 256, got '0'"),
        ("orm=models/orm:orm,threads=two", "threads must be a whole number from 1 to 256, got 'two'"),
        ("prm=models/prm:prm,cache_mb=-1", r"cache_mb must be a whole number from 0 \(keep none\) to 65536, got '-1'"),
        ("orm=models/orm:orm,cache_mb=70000", "cache_mb must be a whole number from 0"),
        ("prm=models/prm:prm,answer=maybe", "answer must be on or off, got 'maybe'"),
        ("prm=models/prm:prm-step-tag,answer=on", "answer applies to generative PRMs only"),
        ("orm=models/orm:orm,answer=on", "bad option 'answer=on' for kind orm"),
        ("j=llm_judge:fast", "the built-in llm_judge takes no kind or options"),
        ("mix=ensemble:", "an ensemble needs members, e.g. mix=ensemble:prm"),
        ("mix=ensemble:prm*0.7+", "bad ensemble term ''; expected NAME or NAME\\*WEIGHT"),
        ("mix=ensemble:prm*heavy", "weight 'heavy' of 'prm' is not a finite number"),
        ("mix=ensemble:prm*inf", "weight 'inf' of 'prm' is not a finite number"),
        ("mix=ensemble:prm+prm", "lists a member twice"),
    ],
)
def test_parse_spec_errors(spec, message) -> None:
    with pytest.raises(VerifierSpecError, match=message):
        parse_spec(spec)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    from tests.unit.test_verifiers_models import ORM_SIDECAR, PRM_SIDECAR, build_model

    root = tmp_path_factory.mktemp("models")
    build_model(root / "orm", "ForSequenceClassification", sidecar=ORM_SIDECAR)
    build_model(root / "prm", "ForTokenClassification", sidecar=PRM_SIDECAR)
    build_model(root / "bare_orm", "ForSequenceClassification")
    build_model(root / "bare_prm", "ForTokenClassification")
    build_model(root / "policy_lm", "ForCausalLM")
    build_model(root / "shepherd", "ForCausalLM", sidecar={"kind": "prm", "format": "step_tag", "step_tag": " #"})
    (root / "policy.yaml").write_text("forbidden: [password]\n")
    return root


def test_detect_kind(models_dir, tmp_path) -> None:
    assert detect_kind(models_dir / "orm") == "orm"
    assert detect_kind(models_dir / "prm") == "prm"
    assert detect_kind(models_dir / "bare_orm") == "orm"  # from config.json architectures
    assert detect_kind(models_dir / "bare_prm") == "prm"
    assert detect_kind(models_dir / "shepherd") == "prm-step-tag"
    assert detect_kind(models_dir / "policy.yaml") == "policy"
    with pytest.raises(VerifierLoadError, match=r"is a causal language model .* pass :prm-step-tag"):
        detect_kind(models_dir / "policy_lm")
    with pytest.raises(VerifierLoadError, match=r"verifier path .*nope does not exist"):
        detect_kind(tmp_path / "nope")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(VerifierLoadError, match=r"is a file but not a policy spec \(\.yaml, \.yml, \.json\)"):
        detect_kind(tmp_path / "notes.txt")
    (tmp_path / "folder").mkdir()
    with pytest.raises(VerifierLoadError, match=r"is not a model folder: it has no config.json"):
        detect_kind(tmp_path / "folder")
    (tmp_path / "folder" / "config.json").write_text("{}")
    with pytest.raises(VerifierLoadError, match=r"has a config.json but no weights"):
        detect_kind(tmp_path / "folder")
    weird = tmp_path / "weird"
    weird.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (weird / name).write_text(json.dumps({"architectures": ["BertModel"]}))
    with pytest.raises(VerifierLoadError, match=r"cannot tell what verifier this is .*pass :KIND, one of orm, prm"):
        detect_kind(weird)
    (weird / "config.json").write_text(json.dumps({"architectures": ["Qwen2ForProcessRewardModel"]}))
    with pytest.raises(VerifierLoadError, match="needs its own remote code"):
        detect_kind(weird)
    (weird / "ponder.json").write_text(json.dumps({"kind": "policy"}))
    with pytest.raises(VerifierLoadError, match=r"ponder.json has kind 'policy'"):
        detect_kind(weird)


def _engine(**caps) -> FakeEngine:
    return FakeEngine(capabilities=EngineCapabilities(max_model_len=512, **caps))


async def test_default_verifiers_and_lookup(models_dir) -> None:
    vset = default_verifiers(models_dir, engine=_engine())
    assert vset.names() == ["prm", "orm", "math_rule", "calculator", "llm_judge"]
    assert vset.default_name == "prm" and vset.default is vset.get("prm")
    assert [(i.name, i.kind, i.is_step) for i in vset.describe()] == [
        ("prm", "prm", True),
        ("orm", "orm", False),
        ("math_rule", "math_rule", False),
        ("calculator", "calculator", True),
        ("llm_judge", "llm_judge", False),
    ]
    assert len(await vset.get("orm").score("What is 1+1?", ["<think>1+1=2\n</think>2", "3"])) == 2
    with pytest.raises(UnknownVerifierError) as err:
        vset.get("rm")
    assert (
        str(err.value)
        == "Unknown verifier 'rm'. Valid verifiers: 'prm', 'orm', 'math_rule', 'calculator', 'llm_judge'."
    )
    assert isinstance(err.value, KeyError) and isinstance(err.value, InvalidRequestError)
    assert (err.value.status, err.value.param) == (400, "verifier")
    await vset.aclose()


def test_default_falls_back_to_orm_then_math_rule(models_dir, tmp_path) -> None:
    (tmp_path / "orm").symlink_to(models_dir / "orm")
    only_orm = default_verifiers(tmp_path, engine=_engine(logprobs=False))
    assert only_orm.names() == ["orm", "math_rule", "calculator"] and only_orm.default_name == "orm"
    with pytest.raises(UnknownVerifierError, match=r"'llm_judge' is not available on this server: .*logprobs"):
        only_orm.get("llm_judge")
    bare = default_verifiers(tmp_path / "none")
    assert bare.names() == ["math_rule", "calculator"] and bare.default_name == "math_rule"
    assert "llm_judge" in bare.unavailable
    empty = VerifierSet()
    assert empty.default is None
    with pytest.raises(UnknownVerifierError, match="No verifiers are loaded on this server"):
        empty.get("prm")


def test_from_specs_overrides_defaults_and_builds_ensembles_last(models_dir) -> None:
    specs = [
        "mix=ensemble:prm*0.7+orm*0.3",
        f"prm={models_dir / 'bare_prm'}:prm,agg=last,device=cpu",
        f"safety={models_dir / 'policy.yaml'}",
        "rule=math_rule",
    ]
    vset = VerifierSet.from_specs(specs, engine=_engine(), models_dir=models_dir, default="mix")
    assert vset.names() == ["orm", "math_rule", "calculator", "llm_judge", "prm", "safety", "rule", "mix"]
    assert vset.get("prm").source == str(models_dir / "bare_prm") and vset.get("prm").aggregation == "last"
    assert vset.default_name == "mix" and vset.get("mix").spec == "prm*0.7+orm*0.3"
    assert [i.is_step for i in vset.describe() if i.name == "mix"] == [False]  # the ORM scores no steps
    assert [p.name for p in vset.policies()] == ["safety"]
    only = VerifierSet.from_specs([f"shepherd={models_dir / 'shepherd'}"])
    assert only.names() == ["shepherd"] and only.default_name == "shepherd"  # the only PRM


def test_from_specs_errors(models_dir) -> None:
    with pytest.raises(VerifierSpecError, match="names must be unique; repeated: a"):
        VerifierSet.from_specs(["a=math_rule", "a=llm_judge"])
    with pytest.raises(VerifierLoadError, match=r"ensemble 'mix': unknown member\(s\) \['prm'\]; loaded verifiers: r"):
        VerifierSet.from_specs(["mix=ensemble:prm+r", "r=math_rule"])
    with pytest.raises(VerifierLoadError, match="llm_judge needs the served engine"):
        VerifierSet.from_specs(["llm_judge"])
    with pytest.raises(VerifierLoadError, match="default verifier 'prm' is not loaded; loaded: math_rule"):
        VerifierSet.from_specs(["math_rule"], default="prm")
    with pytest.raises(VerifierLoadError, match="does not exist"):
        VerifierSet.from_specs([f"prm={models_dir / 'missing'}"])
    with pytest.raises(VerifierLoadError, match="lacks weights"):
        load_verifier(f"orm={models_dir / 'policy_lm'}:orm")
    with pytest.raises(VerifierLoadError, match="two verifiers are named 'math_rule'"):
        VerifierSet.from_specs(["x=math_rule"], models_dir=models_dir / "none").add(load_verifier("math_rule"))


def test_cache_mb_bounds_the_questions_a_tree_reading_verifier_keeps(models_dir) -> None:
    from ponder.core.sidecar import models_dir as bundled

    prm = load_verifier(f"p={bundled() / 'prm'}:prm-generative,cache_mb=8")
    orm = load_verifier(f"o={bundled() / 'orm'}:orm,cache_mb=0")
    default = load_verifier(f"d={bundled() / 'prm'}:prm-generative")
    assert (prm.tree_reader.max_bytes, orm.reader.tree_reader.max_bytes) == (8 << 20, 0)
    assert default.tree_reader.max_bytes == 64 << 20
    with pytest.raises(VerifierLoadError, match="a classifier PRM keeps no questions; cache_mb does not apply"):
        load_verifier(f"prm={models_dir / 'prm'}:prm,cache_mb=8")
    with pytest.raises(VerifierLoadError, match="a sequence-classification ORM keeps no questions"):
        load_verifier(f"orm={models_dir / 'orm'}:orm,cache_mb=8")


def test_a_generative_prm_reads_the_answer_unless_told_not_to(models_dir) -> None:
    from ponder.core.sidecar import models_dir as bundled

    assert load_verifier(f"p={bundled() / 'prm'}:prm-generative").scores_answer
    assert not load_verifier(f"p={bundled() / 'prm'}:prm-generative,answer=off").scores_answer
    with pytest.raises(VerifierLoadError, match="a classifier PRM reads no answer"):
        load_verifier(f"prm={models_dir / 'prm'}:prm,answer=on")


def test_check_specs_refuses_bad_flags_without_loading_weights(tmp_path, models_dir) -> None:
    from ponder.verifiers.registry import check_specs

    good = check_specs(["rule=math_rule", f"p={models_dir / 'prm'}", "mix=ensemble:p+rule"])
    assert [s.name for s in good] == ["rule", "p", "mix"]
    with pytest.raises(VerifierLoadError, match="does not exist"):
        check_specs(["bad=/nonexistent/prm"])
    with pytest.raises(VerifierLoadError, match="does not exist"):
        check_specs(["bad=/nonexistent/prm:prm"])
    with pytest.raises(VerifierLoadError, match="must be unique; repeated: a"):
        check_specs(["a=math_rule", "a=calculator"])
    with pytest.raises(VerifierLoadError):
        check_specs([str(tmp_path)])  # no NAME=
