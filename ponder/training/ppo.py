"""``ponder train ppo``: a compact PPO (value head, GAE(lambda), KL penalty to the reference); TRL no longer has one.

One step: sample one completion per prompt of a rollout batch; score it with the reward adapter; per token, the
reward is ``-kl_coef * (log pi - log pi_ref)`` plus the sequence score on its last token; GAE turns rewards and the
value head's estimates into advantages and returns; then ``ppo_epochs`` passes of mini-batches minimise the clipped
surrogate plus ``vf_coef`` times the clipped value loss. The math is in pure functions, tested against hand values.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ponder.training.common import TrainingInputError, training_run
from ponder.training.grpo import check_rl_inputs, prompt_rows
from ponder.training.policy_common import check_policy_args, check_positive, load_policy, save_policy, write_config
from ponder.training.ppo_config import PPOArgs
from ponder.training.rewards import build_rewards, close_rewards, parse_rewards, weighted_sum

log = logging.getLogger("ponder.train.ppo")


# ------------------------------------------------------------------------------------------------ the arithmetic


def masked_mean(x: Any, mask: Any) -> Any:
    """Mean of ``x`` over the positions where ``mask`` is 1."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


def gae(rewards: Any, values: Any, mask: Any, gamma: float, lam: float) -> tuple[Any, Any]:
    """Generalised advantage estimation over right-padded token sequences ``[batch, time]``.

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` (``V`` after the last real token is 0: the episode ends there) and
    ``A_t = delta_t + gamma * lam * A_{t+1}``; returns ``(advantages, returns = advantages + values)``, 0 on padding.
    """
    import torch

    steps = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(steps)):
        going_on = mask[:, t + 1] if t + 1 < steps else torch.zeros_like(running)
        next_value = values[:, t + 1] * going_on if t + 1 < steps else running * 0
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * going_on * running
        advantages[:, t] = running
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def policy_loss(logprobs: Any, old_logprobs: Any, advantages: Any, mask: Any, clip: float) -> tuple[Any, Any]:
    """PPO's clipped surrogate ``mean(max(-A r, -A clip(r, 1-eps, 1+eps)))`` and the fraction of clipped tokens."""
    import torch

    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - clip, 1 + clip)
    return masked_mean(torch.max(unclipped, clipped), mask), masked_mean((clipped > unclipped).float(), mask)


def value_loss(values: Any, old_values: Any, returns: Any, mask: Any, clip: float) -> Any:
    """``0.5 * mean(max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2))``: the value moves at most ``c``."""
    import torch

    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    return 0.5 * masked_mean(torch.max((values - returns) ** 2, (clipped - returns) ** 2), mask)


def token_rewards(scores: Any, logprobs: Any, ref_logprobs: Any, mask: Any, kl_coef: float) -> tuple[Any, Any]:
    """Per-token rewards: ``-kl_coef * (log pi - log pi_ref)`` everywhere, plus the score on each last real token;
    and the per-token KL estimate itself."""
    kl = (logprobs - ref_logprobs) * mask
    rewards = -kl_coef * kl
    last = mask.sum(dim=1).long().clamp(min=1) - 1
    rewards[range(len(scores)), last] += scores
    return rewards, kl


def whiten(x: Any, mask: Any) -> Any:
    """``x`` normalised to mean 0, variance 1 over the masked positions."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * (var + 1e-8).rsqrt() * mask


# ------------------------------------------------------------------------------------------------ the model


def value_head(model: Any) -> Any:
    """A linear head from the policy's last hidden state to a scalar value, initialised at 0."""
    import torch

    head = torch.nn.Linear(model.config.hidden_size, 1)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    return head


def forward(model: Any, head: Any, ids: Any, attention: Any, start: int) -> tuple[Any, Any]:
    """Log-probabilities of the tokens from ``start`` on, and the values of the states that chose them."""
    import torch

    out = model(input_ids=ids, attention_mask=attention, output_hidden_states=head is not None)
    logits = out.logits[:, start - 1 : -1].float()
    logprobs = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, start:].unsqueeze(-1)).squeeze(-1)
    values = head(out.hidden_states[-1][:, start - 1 : -1].float()).squeeze(-1) if head is not None else None
    return logprobs, values


@dataclass
class Rollout:
    """One batch of sampled completions and everything PPO needs from them."""

    ids: Any  # [batch, prompt + completion], prompts left-padded
    attention: Any
    start: int  # where the completions begin
    mask: Any  # [batch, completion]: 1 on real completion tokens (up to and including the end token)
    logprobs: Any
    values: Any
    advantages: Any
    returns: Any
    stats: dict[str, float]


# ------------------------------------------------------------------------------------------------ the loop


class PPO:
    """The PPO loop over one policy (LoRA adapters or every weight), its value head and the reference policy."""

    def __init__(
        self, cfg: PPOArgs, tokenizer: Any, model: Any, rewards: list[Any], runner: asyncio.Runner, steps: int
    ) -> None:
        import torch
        from transformers import get_scheduler

        from ponder.training.lora import apply_lora

        self.cfg, self.tokenizer, self.rewards, self.runner = cfg, tokenizer, rewards, runner
        self.reference = None if cfg.lora_r else copy.deepcopy(model).eval().requires_grad_(False)
        self.model = apply_lora(model, cfg)
        self.device = next(model.parameters()).device  # the CPU, or the GPU a QLoRA model was loaded on
        self.head = value_head(model).to(self.device)
        params = [p for p in self.model.parameters() if p.requires_grad] + list(self.head.parameters())
        self.optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        updates = steps * cfg.ppo_epochs * min(cfg.mini_batches, cfg.batch_size)
        warmup = int(cfg.warmup_ratio * updates)
        self.schedule = get_scheduler(
            cfg.lr_scheduler, self.optimizer, num_warmup_steps=warmup, num_training_steps=updates
        )
        tokenizer.padding_side = "left"

    def _reference_logprobs(self, ids: Any, attention: Any, start: int) -> Any:
        """With LoRA the reference is the same model with its adapters off; else the frozen copy."""
        model = self.reference or self.model
        context = self.model.disable_adapter() if self.reference is None else nullcontext()
        with context:
            return forward(model, None, ids, attention, start)[0]

    def _sample(self, rows: list[dict[str, Any]]) -> tuple[Any, Any, int, Any]:
        import torch

        texts = [
            self.tokenizer.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True) for r in rows
        ]
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        start = enc["input_ids"].shape[1]
        self.model.eval()
        with torch.no_grad():
            ids = self.model.generate(
                **enc,
                do_sample=True,
                temperature=self.cfg.temperature,
                top_k=0,
                max_new_tokens=self.cfg.max_completion_length,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.tokenizer.eos_token_id,
                use_cache=True,
            )
        completion = ids[:, start:]
        ended = (completion == self.tokenizer.eos_token_id).long()
        mask = ((ended.cumsum(dim=1) - ended) == 0).float()  # every token up to and including the first end token
        attention = torch.cat([enc["attention_mask"].float(), mask], dim=1)
        return ids, attention, start, mask

    def rollout(self, rows: list[dict[str, Any]]) -> Rollout:
        """Sample, score and estimate advantages for one batch of prompts."""
        import torch

        ids, attention, start, mask = self._sample(rows)
        texts = self.tokenizer.batch_decode(ids[:, start:] * mask.long(), skip_special_tokens=True)
        columns = {k: [r.get(k) for r in rows] for k in rows[0] if k != "prompt"}
        prompts = [r["prompt"] for r in rows]
        scores = torch.tensor(
            self.runner.run(weighted_sum(self.rewards, prompts, texts, **columns)), device=self.device
        )
        with torch.no_grad():
            logprobs, values = forward(self.model, self.head, ids, attention, start)
            ref = self._reference_logprobs(ids, attention, start)
        values = values * mask
        rewards, kl = token_rewards(scores, logprobs * mask, ref * mask, mask, self.cfg.kl_coef)
        advantages, returns = gae(rewards, values, mask, self.cfg.gamma, self.cfg.lam)
        if self.cfg.whiten_advantages:
            advantages = whiten(advantages, mask)
        stats = {
            "reward": scores.mean().item(),
            "kl": (kl.sum(dim=1)).mean().item(),
            "completion_length": mask.sum(dim=1).mean().item(),
        }
        return Rollout(ids, attention, start, mask, logprobs, values, advantages, returns, stats)

    def update(self, batch: Rollout) -> dict[str, float]:
        """``ppo_epochs`` passes of mini-batches over the rollout; the mean losses and clip fraction."""
        import torch

        self.model.train()
        totals = {"policy_loss": 0.0, "value_loss": 0.0, "clipfrac": 0.0}
        size = len(batch.ids)
        chunks = max(1, min(self.cfg.mini_batches, size))
        updates = 0
        for _ in range(self.cfg.ppo_epochs):
            for idx in torch.randperm(size).chunk(chunks):
                logprobs, values = forward(self.model, self.head, batch.ids[idx], batch.attention[idx], batch.start)
                mask = batch.mask[idx]
                pl, clipfrac = policy_loss(
                    logprobs, batch.logprobs[idx], batch.advantages[idx], mask, self.cfg.clip_range
                )
                vl = value_loss(values, batch.values[idx], batch.returns[idx], mask, self.cfg.clip_range_value)
                self.optimizer.zero_grad()
                (pl + self.cfg.vf_coef * vl).backward()
                params = [p for g in self.optimizer.param_groups for p in g["params"]]
                torch.nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm)
                self.optimizer.step()
                self.schedule.step()
                totals["policy_loss"] += pl.item()
                totals["value_loss"] += vl.item()
                totals["clipfrac"] += clipfrac.item()
                updates += 1
        return {**{k: v / updates for k, v in totals.items()}, "learning_rate": self.schedule.get_last_lr()[0]}


def _check(cfg: PPOArgs) -> None:
    check_policy_args(cfg)
    check_rl_inputs(cfg)
    check_positive(cfg, "ppo_epochs", "mini_batches", "clip_range", "clip_range_value", "max_grad_norm")
    if not 0 <= cfg.lam <= 1 or not 0 < cfg.gamma <= 1:
        raise TrainingInputError("--lam must be in [0, 1] and --gamma in (0, 1]")
    if cfg.grad_accum != 1:
        raise TrainingInputError("--grad-accum is not used by ppo: each rollout is split by --mini-batches instead")
    if cfg.kl_coef < 0 or cfg.vf_coef < 0:
        raise TrainingInputError("--kl-coef and --vf-coef must not be negative")


def _steps(cfg: PPOArgs, prompts: int) -> int:
    return cfg.max_steps if cfg.max_steps > 0 else max(1, math.ceil(cfg.epochs * prompts / cfg.batch_size))


def _loop(cfg: PPOArgs, out: Path, rows: list[dict[str, Any]], runner: asyncio.Runner) -> tuple[Any, Any, int]:
    """Run the PPO steps with a progress bar, logging each step; the trained model, tokenizer and step count."""
    import random

    from tqdm import tqdm

    tokenizer, model = load_policy(cfg)
    rewards = build_rewards(parse_rewards(cfg.reward))
    steps = _steps(cfg, len(rows))
    ppo = PPO(cfg, tokenizer, model, rewards, runner, steps)
    order = random.Random(cfg.seed)
    log_file = out / "logs" / "train.jsonl"
    try:
        with tqdm(total=steps, desc="ppo", unit="step") as bar, log_file.open("a") as logs:
            for step in range(1, steps + 1):
                batch = ppo.rollout(order.sample(rows, min(cfg.batch_size, len(rows))))
                record = {"step": step, **batch.stats, **ppo.update(batch)}
                if step % cfg.logging_steps == 0 or step == steps:
                    logs.write(json.dumps(record) + "\n")
                    log.info("%s", json.dumps(record))
                bar.set_postfix(reward=f"{record['reward']:.3f}", kl=f"{record['kl']:.3f}")
                bar.update()
    finally:
        runner.run(close_rewards(rewards))
    return ppo.model, tokenizer, steps


def train_ppo(cfg: PPOArgs) -> Path:
    """PPO on the reward terms; save the (merged) policy."""
    import torch

    _check(cfg)
    with training_run(cfg.output_dir, overwrite=cfg.overwrite) as (out, _handler):
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        started = time.time()
        rows = prompt_rows(cfg)
        with asyncio.Runner() as runner:  # one event loop for every reward call (verifiers keep loop-bound state)
            model, tokenizer, steps = _loop(cfg, out, rows, runner)
        save_policy(cfg, out, model, tokenizer)
        data = {"source": str(cfg.dataset or "reasoning-gym (generated)"), "prompts": len(rows), "rewards": cfg.reward}
        write_config(cfg, out, "ponder train ppo", started, data=data, steps=steps)
        log.info("saved %s (%d PPO steps, %.1f min)", out, steps, (time.time() - started) / 60)
        return out
