"""A verifier from any causal LM folder (``--base-model``): a chat template where the tokenizer has none, and LoRA."""

from __future__ import annotations

from typing import Any

from ponder.training.lora import apply_lora, head_modules

# For tokenizers without a chat template (base models): the verifier reads the question and the answer as plain text.
# It is saved with the verifier's tokenizer, so serving renders exactly what training did.
PLAIN_CHAT_TEMPLATE = (
    "{% if bos_token %}{{ bos_token }}{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\\n\\n' }}"
    "{% elif message['role'] == 'user' %}{{ 'Question: ' + message['content'] + '\\n' }}"
    "{% else %}{{ 'Answer: ' + message['content'] + '\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Answer: ' }}{% endif %}"
)
TASK_TYPES = {"sequence": "SEQ_CLS", "token": "TOKEN_CLS"}


def ensure_chat_template(tokenizer: Any) -> bool:
    """Give a tokenizer without a chat template :data:`PLAIN_CHAT_TEMPLATE`; whether it needed one."""
    if tokenizer.chat_template:
        return False
    tokenizer.chat_template = PLAIN_CHAT_TEMPLATE
    return True


def with_lora(model: Any, cfg: Any, head: str) -> tuple[Any, str | None]:
    """The classifier with LoRA adapters on its body and its new head trained in full (``modules_to_save``) when
    ``cfg.lora_r`` > 0, and the model card's line on them; else ``model`` itself and None."""
    heads = head_modules(model)
    model = apply_lora(model, cfg, TASK_TYPES[head], list(heads))  # a copy: PEFT appends its own names to it
    if not cfg.lora_r:
        return model, None
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return model, (
        f"LoRA (PEFT): rank {cfg.lora_r}, alpha {cfg.lora_alpha:g}, dropout {cfg.lora_dropout:g} on "
        f"{' '.join(cfg.lora_target_modules)}; the new head ({', '.join(heads)}) trained in full; {trainable:,} of "
        f"{total:,} parameters trained; the adapters are merged into the saved weights."
    )
