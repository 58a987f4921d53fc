"""The training chats' mix: reasoning-gym's wording, natural phrasings, system prompts, mixed-digit sums, refusals."""

from __future__ import annotations

import random
from dataclasses import dataclass

from ponder.tasks import Problem, render_trace, split_range
from ponder.tasks.phrasings import (
    REFUSAL,
    TRAIN_OFF_TOPIC,
    TRAIN_QUESTIONS,
    TRAIN_SYSTEM,
    instructed,
    off_topic_prompt,
    rephrase,
    two_term_problem,
    wide_question,
    wide_system_prompt,
)
from ponder.tasks.traces import THINK_CLOSE, THINK_OPEN

# Extra problems take seeds from the last tenth of a split's range; generated problems count up from its start.
_EXTRA_OFFSET_TENTHS = 9


@dataclass(frozen=True)
class ChatMix:
    """Fractions of the generated chats; every fraction is of the number of problems asked for."""

    natural: float = 0.0  # problems asked in a natural phrasing instead of reasoning-gym's template
    system: float = 0.0  # chats that open with a system prompt
    two_term: float = 0.0  # extra two-term sums with one- and two-digit numbers mixed
    off_topic: float = 0.0  # extra prompts that are not arithmetic, answered with the refusal
    wide_system: bool = False  # system prompts composed from many personas and instructions, not the five fixed ones
    wide_questions: bool = False  # half the natural questions composed from openers, requests and closers
    instruction: float = 0.0  # natural questions followed by an instruction on how to answer ("Show your work.")

    def check(self) -> None:
        """ValueError naming the first fraction outside [0, 1]."""
        for name in ("natural", "system", "two_term", "off_topic", "instruction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"--{name.replace('_', '-')}-fraction must be within [0, 1], got {value}")


# The mix the bundled policy's second SFT stage is trained on (the Makefile's flags), replayed by RFT rounds.
BUNDLED_MIX = ChatMix(natural=0.5, system=0.1, two_term=0.8, off_topic=0.1)


def refusal_turn() -> str:
    """The assistant turn for what is not arithmetic: an empty think block, then the refusal."""
    return THINK_OPEN + THINK_CLOSE + REFUSAL


def extra_seeds(split: str, count: int, offset: int = 0) -> range:
    """Seeds of the extra problems of a split, clear of the seeds its generated problems count up from."""
    seeds = split_range(split)
    start = seeds.start + len(seeds) * _EXTRA_OFFSET_TENTHS // 10 + offset
    return range(start, start + count)


def asked(
    problem: Problem, rng: random.Random, natural: float, wide: bool = False, instruction: float = 0.0
) -> Problem:
    """``problem`` as asked: in a training wording with probability ``natural``, else in reasoning-gym's.

    With ``wide`` half the training wordings are composed (``wide_question``) rather than drawn from the fixed list;
    a share ``instruction`` of the natural ones ends with an instruction on how to answer.
    """
    if rng.random() >= natural:
        return problem
    if wide and rng.random() < 0.5:
        phrased = rephrase(problem, rng, (wide_question(rng),))
    else:
        phrased = rephrase(problem, rng, TRAIN_QUESTIONS)
    # no draw at 0, so a mix without instructions makes the chats it always made
    return instructed(phrased, rng) if instruction and rng.random() < instruction else phrased


def _system_prompt(rng: random.Random, mix: ChatMix) -> str:
    return wide_system_prompt(rng) if mix.wide_system else rng.choice(TRAIN_SYSTEM)


def _chat(user: str, answer: str, rng: random.Random, mix: ChatMix) -> list[dict[str, str]]:
    system = [{"role": "system", "content": _system_prompt(rng, mix)}] if rng.random() < mix.system else []
    return [*system, {"role": "user", "content": user}, {"role": "assistant", "content": answer}]


def mixed_chats(problems: list[Problem], split: str, mix: ChatMix, offset: int = 0) -> list[list[dict[str, str]]]:
    """Training chats for ``problems`` plus the extras ``mix`` asks for; the same arguments give the same chats.

    ``offset`` skips that many extras' seeds, as the problems' own offset skips theirs: a later training stage
    draws what earlier ones did not see.
    """
    chats = []
    seeded = [(p, random.Random(f"{split}:{p.seed}:chat")) for p in problems]
    for seed in extra_seeds(split, round(mix.two_term * len(problems)), offset):
        seeded.append((two_term_problem(split, seed), random.Random(f"{split}:{seed}:two_term")))
    for p, rng in seeded:
        chats.append(
            _chat(asked(p, rng, mix.natural, mix.wide_questions, mix.instruction).question, render_trace(p), rng, mix)
        )
    for i in range(offset, offset + round(mix.off_topic * len(problems))):
        rng = random.Random(f"{split}:{i}:off_topic")
        chats.append(_chat(off_topic_prompt(rng, TRAIN_OFF_TOPIC), refusal_turn(), rng, mix))
    return chats
