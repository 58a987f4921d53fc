"""Where the PRM's scoring time goes: transformers' forward pass against a lean one, and float32 against bfloat16.

Run from the repository root on an otherwise idle machine (verifiers.md, "Serving cost"), against the scoring code it
measured (since then the served path reads a request in one pass over its answers' prefix tree, ``TreeReader``):
    git checkout d9eb0ef -- ponder/verifiers
    python docs/results/verifiers/forward_bench.py build/samples/validation-200x16.jsonl
    git checkout HEAD -- ponder/verifiers
(the samples file is the cache `make models` writes through `ponder.training.genprm_card --cache`).

Every arm scores the same 200 sets of 16 policy samples with the served code (`GenerativePRM.score_batch`: identical
samples once, the common prefix once); the arms differ only in the forward pass. ``lean`` is a plain-torch Llama
forward (fused QKV and gate/up matrices, rotary tables computed once, a boolean mask, no cache objects): what is left
of the time once transformers' per-call machinery is gone. Prints ms per set, the largest score difference from the
served arm, pairwise accuracy and best-of-16 accuracy by the minimum step score.
"""

from __future__ import annotations

import collections
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ponder.verifiers.generative_prm import GenerativePRM, common_prefix_len


class LeanLlama:
    """A Llama forward pass in plain torch over a transformers model's weights (float32)."""

    def __init__(self, hf) -> None:
        c, m = hf.config, hf.model
        self.heads, self.kv_heads, self.head_dim, self.eps = (
            c.num_attention_heads,
            c.num_key_value_heads,
            c.head_dim,
            c.rms_norm_eps,
        )
        self.embed = m.embed_tokens.weight.detach()
        self.layers = [
            {
                "n1": layer.input_layernorm.weight.detach(),
                "qkv": torch.cat(
                    [layer.self_attn.q_proj.weight, layer.self_attn.k_proj.weight, layer.self_attn.v_proj.weight]
                ).detach(),
                "o": layer.self_attn.o_proj.weight.detach(),
                "n2": layer.post_attention_layernorm.weight.detach(),
                "gu": torch.cat([layer.mlp.gate_proj.weight, layer.mlp.up_proj.weight]).detach(),
                "down": layer.mlp.down_proj.weight.detach(),
            }
            for layer in m.layers
        ]
        self.norm, self.head = m.norm.weight.detach(), hf.lm_head.weight.detach()
        inv = 1.0 / c.rope_parameters["rope_theta"] ** (torch.arange(0, self.head_dim, 2).float() / self.head_dim)
        angles = torch.outer(torch.arange(c.max_position_embeddings).float(), inv)
        self.cos, self.sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()

    def _rms(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w

    @staticmethod
    def _rope(x, cos, sin):
        half = x.shape[-1] // 2
        return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin

    def forward(self, ids, positions, mask, past=None):
        """Hidden states [B, T, H] and per-layer (k, v); ``mask`` [B, 1, T, P + T] is True where a query may look."""
        b, t = ids.shape
        x = self.embed[ids]
        cos, sin = self.cos[positions][:, None], self.sin[positions][:, None]
        nq, nk = self.heads * self.head_dim, self.kv_heads * self.head_dim
        cache = []
        for i, layer in enumerate(self.layers):
            qkv = F.linear(self._rms(x, layer["n1"]), layer["qkv"])
            q = qkv[..., :nq].view(b, t, self.heads, self.head_dim).transpose(1, 2)
            k = qkv[..., nq : nq + nk].view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
            v = qkv[..., nq + nk :].view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
            q, k = self._rope(q, cos, sin), self._rope(k, cos, sin)
            cache.append((k, v))
            if past is not None:
                k = torch.cat([past[i][0].expand(b, -1, -1, -1), k], 2)
                v = torch.cat([past[i][1].expand(b, -1, -1, -1), v], 2)
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            x = x + F.linear(attended.transpose(1, 2).reshape(b, t, -1), layer["o"])
            gate, up = F.linear(self._rms(x, layer["n2"]), layer["gu"]).chunk(2, -1)
            x = x + F.linear(F.silu(gate) * up, layer["down"])
        return self._rms(x, self.norm), cache

    def logprobs(self, hidden):
        return F.linear(hidden, self.head).log_softmax(-1)


def _causal(t: int):
    return torch.ones(t, t, dtype=torch.bool).tril()[None, None]


class LeanPRM(GenerativePRM):
    """The served PRM with its shared-prefix pass run by :class:`LeanLlama`."""

    def __init__(self, folder: str) -> None:
        super().__init__(folder, device="cpu")
        self.lean = LeanLlama(self.model)

    def _score_shared(self, members, feats, out):
        rows = [feats[i][0] for i in members]
        n = min(common_prefix_len(rows), min(len(r) for r in rows) - 1)
        first = min(feats[i][1][0][0] for i in members) - 1
        hidden, cache = self.lean.forward(torch.tensor([rows[0][:n]]), torch.arange(n)[None], _causal(n))
        head_lp = self.lean.logprobs(hidden[0, first:])
        shared = head_lp[:-1].gather(-1, torch.tensor(rows[0][first + 1 : n])[:, None])[:, 0]
        tails = [r[n:] for r in rows]
        b, w = len(tails), max(len(t) for t in tails)
        ids, valid = torch.zeros(b, w, dtype=torch.long), torch.zeros(b, w, dtype=torch.bool)
        for r, tail in enumerate(tails):
            ids[r, : len(tail)], valid[r, : len(tail)] = torch.tensor(tail), True
        own = _causal(w) & valid[:, None, None, :]
        mask = torch.cat([torch.ones(b, 1, w, n, dtype=torch.bool), own], -1) | ~valid[:, None, :, None]
        hidden, _ = self.lean.forward(ids, (n + torch.arange(w))[None].expand(b, -1), mask, cache)
        logprobs = self.lean.logprobs(hidden)
        for row in range(b):
            rest = logprobs[row, :-1].gather(-1, ids[row, 1:, None])[:, 0]
            taken = torch.cat([shared, head_lp[-1, ids[row, :1]], rest])
            out[members[row]] = [
                math.exp(float(taken[a - 1 - first : b_ - 1 - first].sum())) for a, b_ in feats[members[row]][1]
            ]


def main(samples_path: str, rounds: int = 3) -> None:
    torch.set_num_threads(1)
    rows = [json.loads(line) for line in Path(samples_path).read_text().splitlines()[1:]]  # line 1: the header
    by_problem = collections.defaultdict(list)
    for r in rows:
        by_problem[r["seed"]].append(r)
    groups = list(by_problem.values())
    sets = [[(g[0]["messages"], r["steps"]) for r in g] for g in groups]
    served = GenerativePRM("ponder/models/prm", device="cpu")
    bf16 = GenerativePRM("ponder/models/prm", device="cpu")
    bf16.model = bf16.model.to(torch.bfloat16)
    arms = {
        "transformers, float32 (served)": served,
        "lean forward, float32": LeanPRM("ponder/models/prm"),
        "transformers, bfloat16 weights": bf16,
    }
    seconds, scores = collections.Counter(), {name: [] for name in arms}
    with torch.inference_mode():
        for rnd in range(rounds):
            for k, items in enumerate(sets):
                names = list(arms)
                for name in names[k % 3 :] + names[: k % 3]:  # rotate so no arm always runs first
                    start = time.perf_counter()
                    result = arms[name].score_batch(items)
                    seconds[name] += time.perf_counter() - start
                    if rnd == 0:
                        scores[name].append(result)
    base = scores["transformers, float32 (served)"]
    print("| forward pass | ms per set | max score difference | pairwise | best of 16 |")
    print("|---|---|---|---|---|")
    for name in arms:
        diff = max(
            abs(a - b)
            for s, t in zip(scores[name], base, strict=True)
            for x, y in zip(s, t, strict=True)
            for a, b in zip(x, y, strict=True)
        )
        pairs = right = best = 0
        for group, result in zip(groups, scores[name], strict=True):
            score = [min(steps) if steps else 0.0 for steps in result]
            ok = [r["correct"] for r in group]
            for i in range(len(group)):
                for j in range(len(group)):
                    if ok[i] and not ok[j]:
                        pairs, right = pairs + 1, right + (score[i] > score[j])
            best += ok[max(range(len(group)), key=score.__getitem__)]
        ms = seconds[name] / len(sets) / rounds * 1000
        print(f"| {name} | {ms:.1f} | {diff:.1e} | {right / pairs:.1%} | {best / len(groups):.1%} |")


if __name__ == "__main__":
    main(sys.argv[1])
