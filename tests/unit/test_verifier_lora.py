"""A verifier from any causal LM: ``--base-model`` (alias ``--init-model``), the plain chat template, LoRA on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ponder.cli.main import main as ponder
from ponder.training.base_model import PLAIN_CHAT_TEMPLATE, ensure_chat_template, with_lora
from ponder.training.lora import LoraArgs, head_modules, merged


def test_base_model_is_the_flag_and_init_model_its_alias():
    from ponder.training.config_parser import ConfigParser
    from ponder.training.prm_config import PRMArgs
    from ponder.training.rm_config import RMArgs

    for cls in (RMArgs, PRMArgs):
        parser = ConfigParser(cls)
        for flag in ("--base-model", "--base_model", "--init-model", "--init_model"):
            (cfg,) = parser.parse_args_into_dataclasses(["--output-dir", "o", flag, "/m", "--lora-r", "4"])
            assert cfg.base_model == "/m" and cfg.lora_r == 4 and cfg.lora_target_modules == ["all-linear"]
        assert "--base-model" in parser.format_help()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--lora-r", "-1"], "--lora-r must be 0"),
        (["--lora-r", "4", "--lora-dropout", "1"], "--lora-dropout in [0, 1)"),
        (["--lora-r", "4", "--lora-alpha", "0"], "--lora-alpha must be positive"),
        (["--lora-r", "4", "--qlora"], "--qlora is not supported by the verifier trainers"),
    ],
)
def test_bad_lora_flags_are_refused_before_anything_is_written(tmp_path: Path, capsys, flags, message):
    for trainer in ("rm", "prm"):
        assert ponder(["train", trainer, "--output-dir", str(tmp_path / "o"), *flags]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_tokenizer_without_a_chat_template_gets_the_plain_one(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert not ensure_chat_template(tokenizer)  # it has one: kept
    tokenizer.chat_template = None
    assert ensure_chat_template(tokenizer) and tokenizer.chat_template == PLAIN_CHAT_TEMPLATE
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+3?"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "Be brief.\n\nQuestion: 2+3?\nAnswer: "


@pytest.mark.parametrize("head", ["sequence", "token"])
def test_lora_trains_adapters_and_the_whole_new_head_and_merges_to_the_same_function(tiny_model_dir: Path, head):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    auto = AutoModelForSequenceClassification if head == "sequence" else AutoModelForTokenClassification
    model = auto.from_pretrained(tiny_model_dir, num_labels=1)
    assert head_modules(model) == ["score"]
    unchanged, note = with_lora(model, LoraArgs(), head)
    assert unchanged is model and note is None  # --lora-r 0: full fine-tuning
    peft_model, note = with_lora(model, LoraArgs(lora_r=4), head)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert all("lora_" in n or ".score.modules_to_save." in n for n in trainable)
    assert any(n.endswith("score.modules_to_save.default.weight") for n in trainable)
    assert note.startswith("LoRA (PEFT): rank 4") and "the new head (score) trained in full" in note
    with torch.no_grad():  # stand-in for training: move every trainable weight
        for p in peft_model.parameters():
            if p.requires_grad:
                p.add_(0.05)
    peft_model.eval()
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    expected = peft_model(input_ids=ids).logits
    plain = merged(peft_model)
    assert type(plain).__name__.startswith("Llama") and not any("lora" in n for n, _ in plain.named_parameters())
    assert torch.allclose(plain(input_ids=ids).logits, expected, atol=1e-4)
