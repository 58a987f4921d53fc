"""How well the generative PRM reads questions asked in wordings it was not trained on: the PRM written as a policy.

Run from the repository root (verifiers.md, "Phrasings the PRM has not seen"):
    python docs/results/verifiers/prm_phrasings.py ponder/models/prm
A generative PRM scores a step by the probability it gives it after the question, so where it misreads a question it
doubts every right step. Writing the solution itself, greedy, shows how often it reads each of phrasing_eval's sets
right (200 test problems each; numbers reversed in and out, as the PRM sees them): accuracy per set.
"""

import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ponder.tasks import grade_output
from ponder.training.phrasing_eval import _chat, arithmetic_sets
from ponder.verifiers.formats import reverse_digits

torch.set_num_threads(1)
folder = sys.argv[1]
tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="left")
model = AutoModelForCausalLM.from_pretrained(folder).eval()
for name, (problems, system) in arithmetic_sets(200).items():
    right = 0
    for start in range(0, len(problems), 50):
        chunk = problems[start : start + 50]
        chats = [[{**m, "content": reverse_digits(m["content"])} for m in _chat(p.question, system)] for p in chunk]
        texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=200, do_sample=False)
        written = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        right += sum(grade_output(p, reverse_digits(w)) for p, w in zip(chunk, written, strict=True))
    print(f"{name}: {right / len(problems):.1%}")
