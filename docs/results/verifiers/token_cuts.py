"""How many tokens the PRM reads a request, before and since the tree pass, and what a word tokenizer would remove.

Sized before the tree pass was built (verifiers.md, "Serving cost"); the tree is counted with the served
``TokenTrie``, so its figure is what ``TreeReader`` reads.

Run from the repository root after `make models` (the samples file is the cache it writes through
`ponder.training.genprm_card --cache`):
    python docs/results/verifiers/token_cuts.py build/samples/validation-200x16.jsonl

Per request (one validation problem and its 16 policy samples), averaged over the file:
- the question's tokens under the PRM's tokenizer (read once a request), and how many of them a tokenizer reading
  each word as one token would remove (digits and operators stay one character each);
- the characters of the distinct answers; of those, what the path before the tree pass read (the start every
  distinct answer shares once, then each answer's rest: d9eb0ef); and what reading them as a tree reads (every prefix
  that some of them share once: the served path since e865c05).
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

from transformers import AutoTokenizer

from ponder.verifiers.hf import TokenTrie, common_prefix_len

WORD = re.compile(r"[A-Za-z]+ ?")


def main(samples_path: str, prm: str = "ponder/models/prm") -> None:
    rows = [json.loads(line) for line in Path(samples_path).read_text().splitlines()[1:]]  # line 1: the header
    by_problem: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        by_problem[r["seed"]].append(r)
    tokenizer = AutoTokenizer.from_pretrained(prm)
    question = word_saved = distinct = served = tree = 0
    for group in by_problem.values():
        prompt = tokenizer.apply_chat_template(group[0]["messages"], tokenize=False, add_generation_prompt=True)
        question += len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        word_saved += sum(len(m.group()) - 1 for m in WORD.finditer(prompt))
        answers = sorted({r["completion"] for r in group})
        distinct += sum(map(len, answers))
        shared = min(common_prefix_len(answers), min(map(len, answers)) - 1) if len(answers) > 1 else 0
        served += sum(len(a) - shared for a in answers) + shared
        tree += len(TokenTrie.of(answers).tokens)  # the tokenizer reads one character a token
    n = len(by_problem)
    print(f"| per request, over {n} problems | |")
    print("|---|---|")
    print(f"| question tokens (read once) | {question / n:.1f} |")
    print(f"| of them removed by a word-level tokenizer | {word_saved / n:.1f} |")
    print(f"| distinct answers, characters | {distinct / n:.1f} |")
    print(f"| read as shared start, then rows (before the tree pass) | {served / n:.1f} |")
    print(f"| read as a tree (every shared prefix once: served now) | {tree / n:.1f} ({1 - tree / served:.0%} fewer) |")


if __name__ == "__main__":
    main(*sys.argv[1:])
