"""`ponder serve` refuses bad extension flags before it starts an engine, and loads strategy plugins by path."""

from __future__ import annotations

import pytest

from ponder.cli.main import main
from ponder.cli.serve import check_extensions
from ponder.strategies import registry


def _args(**extra):
    import argparse

    return argparse.Namespace(**{"verifier": [], "strategy_plugin": [], "default_strategy": None, **extra})


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--verifier", "bad=/nonexistent/prm"], "verifier path /nonexistent/prm does not exist"),
        (["--verifier", "ponder/models/prm"], "expected NAME=PATH"),
        (["--strategy-plugin", "no_such_module:Thing"], "--strategy-plugin 'no_such_module:Thing'"),
        (["--strategy-plugin", "tests.unit.plugins.echo_strategy"], "must look like 'package.module:Class'"),
        (["--default-strategy", "magic"], "--default-strategy 'magic' is unknown; valid: beam_search"),
        (["--tool-call-parser", "no_such_parser"], "--tool-call-parser 'no_such_parser' is unknown; valid:"),
    ],
)
def test_bad_flags_exit_with_one_clear_line(argv, message):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--engine", "hf", *argv])
    assert message in str(exit_.value) and str(exit_.value).startswith("ponder serve: ")


def test_strategy_plugin_by_dotted_path_is_registered_and_selectable():
    check_extensions(_args(strategy_plugin=["tests.unit.plugins.echo_strategy:Echo"], default_strategy="plugin_echo"))
    try:
        assert registry.get("plugin_echo").__name__ == "Echo"
    finally:
        registry._STRATEGIES.pop("plugin_echo", None)


def test_default_verifier_flag_must_name_a_loadable_verifier():
    with pytest.raises(SystemExit, match="--default-verifier 'oracle' is neither"):
        main(["serve", "--engine", "hf", "--default-verifier", "oracle"])


def test_the_models_recommended_verifier_is_the_default_unless_the_flag_says_otherwise(tmp_path):
    import json

    from ponder.engines.settings import EngineSettings
    from ponder.server.app import load_verifiers
    from ponder.server.settings import ServerSettings

    (tmp_path / "ponder.json").write_text(json.dumps({"step_separator": "\n", "default_verifier": "calculator"}))
    engine = EngineSettings(model=str(tmp_path))
    both = ("rule=math_rule", "calculator")
    recommended = load_verifiers(ServerSettings(engine=engine, verifiers=both, default_verifiers=False), None)
    assert recommended.default_name == "calculator"
    settings = ServerSettings(engine=engine, verifiers=both, default_verifiers=False, default_verifier="rule")
    chosen = load_verifiers(settings, None)
    assert chosen.default_name == "rule"
    (tmp_path / "ponder.json").write_text(json.dumps({"default_verifier": "absent"}))
    settings = ServerSettings(engine=engine, verifiers=both, default_verifiers=False)
    assert load_verifiers(settings, None).default_name is None  # not loaded: prm, orm, math_rule by name decide


def test_upstream_model_gets_its_recommended_verifier_from_a_local_sidecar_copy(tmp_path):
    """--engine openai names the upstream's model, not a local folder: --model-sidecar supplies its ponder.json."""
    import json

    from ponder.engines.settings import EngineSettings
    from ponder.server.app import load_verifiers, step_format
    from ponder.server.settings import ServerSettings

    copy = tmp_path / "policy-ponder.json"
    copy.write_text(json.dumps({"step_separator": "\n\n", "default_verifier": "calculator"}))
    engine = EngineSettings(kind="openai", model="policy", upstream="http://127.0.0.1:9/v1")
    both = ("rule=math_rule", "calculator")
    blind = ServerSettings(engine=engine, verifiers=both, default_verifiers=False)
    assert load_verifiers(blind, None).default_name is None and step_format(blind).separator == "\n"
    told = ServerSettings(engine=engine, verifiers=both, default_verifiers=False, model_sidecar=str(copy))
    assert load_verifiers(told, None).default_name == "calculator" and step_format(told).separator == "\n\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no such file, nor a folder with ponder.json"), ("[1]", "must hold a JSON object")],
)
def test_a_bad_model_sidecar_is_refused_before_start(tmp_path, content, message):
    path = tmp_path / "ponder.json"
    if content is not None:
        path.write_text(content)
    argv = ["serve", "--engine", "openai", "--upstream", "http://127.0.0.1:9/v1", "--model-sidecar", str(path)]
    with pytest.raises(SystemExit, match=message):
        main(argv)


def test_a_tool_call_parser_needs_an_in_process_engine():
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--engine", "openai", "--upstream", "http://127.0.0.1:9/v1", "--tool-call-parser", "hermes"])
    assert "--tool-call-parser needs the model's tokenizer" in str(exit_.value)
