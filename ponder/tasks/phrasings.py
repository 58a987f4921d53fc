"""How people ask: natural phrasings of a problem, off-topic prompts, and the policy's refusal for them.

The templates are split in two: ``TRAIN`` shapes the training data, ``HELD_OUT`` is only ever used to measure, so a
measured gain on phrasings is a gain on wordings the model never saw.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

from ponder.tasks.problems import Problem

REFUSAL = "Sorry, I can only do arithmetic: sums, differences and products of whole numbers, like 12 + 7 or 3 * 41."

_OP_WORDS = {"+": "plus", "-": "minus", "*": "times"}

TRAIN_QUESTIONS = (
    "{e}",
    "{e}?",
    "{e} =",
    "{e}=?",
    "{e} = ?",
    "What is {e}?",
    "What's {e}?",
    "what is {e}",
    "whats {e}",
    "WHAT IS {e}?",
    "Compute {e}.",
    "Calculate {e}.",
    "Calculate {e}",
    "Evaluate {e}.",
    "Work out {e}.",
    "How much is {e}?",
    "Can you compute {e}?",
    "Could you work out {e} for me?",
    "Please calculate {e}.",
    "Quick question: what is {e}?",
    "Solve: {e}",
    "Solve {e}",
    "Find {e}.",
    "{e}, please.",
    "What does {e} equal?",
    "Tell me what {e} is.",
    "Hey, what's {e}?",
    "I need the answer to {e}.",
    "Result of {e}?",
    "Give me the value of {e}.",
    "Answer this: {e}",
    "Do the math: {e}",
    "What is the result of {e}?",
    "{e}\nWhat is the answer?",
)

HELD_OUT_QUESTIONS = (
    "What do you get for {e}?",
    "Figure out {e}.",
    "{e} equals what?",
    "Please tell me {e}.",
    "Help me with {e}",
    "So what is {e}",
    "Can you tell me the answer to {e}?",
    "Determine {e}.",
    "what's {e}??",
    "Hi! {e}?",
)

# The wide set: an opener, a request around the expression, a closer, composed. A fixed list of training wordings
# taught the policy those wordings; a new one cost it 4-8 points (docs/results/policy.md). None of the held-out
# wordings' verbs or openers appear here ("figure out", "determine", "help me with", "equals what", "so", "hi").
_WIDE_OPENERS = ("", "", "", "Hey, ", "Hello. ", "Quick one: ", "OK, ", "Question: ", "Hmm, ", "Excuse me, ", "Yo ")
_WIDE_REQUESTS = (
    "what is {e}",
    "what's {e}",
    "whats {e}",
    "compute {e}",
    "calculate {e}",
    "evaluate {e}",
    "work out {e}",
    "solve {e}",
    "find {e}",
    "how much is {e}",
    "how much does {e} make",
    "what does {e} come to",
    "what does {e} give",
    "give me {e}",
    "tell me the value of {e}",
    "can you do {e}",
    "could you compute {e}",
    "would you calculate {e}",
    "I need {e}",
    "I need the result of {e}",
    "what would {e} be",
    "what is the value of {e}",
    "compute the value of {e}",
    "what's the sum {e}",
    "the answer to {e}",
    "{e}",
    "{e} is",
    "{e} makes",
    "my homework says {e}",
    "check this: {e}",
)
_WIDE_CLOSERS = ("", "?", "?", ".", "!", " please", ", please?", " for me?", " thanks", "??", " - thanks!", "\nThanks.")


# What people add after the question itself: how to answer. None of them is held out; a PRM that never saw one
# misread "Calculate 23 + 45 + 11. Give only the final number." (docs/results/verifiers.md).
TRAILING_INSTRUCTIONS = (
    "Give only the final number.",
    "Just the number, please.",
    "Answer with a number.",
    "Show your work.",
    "Show your steps.",
    "Explain briefly.",
    "No explanation needed.",
    "Think step by step.",
    "Be quick.",
    "Double-check it.",
    "Reply with the result only.",
    "I need it for my homework.",
    "Thanks in advance!",
    "Write the answer at the end.",
)

HELD_OUT_INSTRUCTIONS = ("Reply with just the answer.", "Show the working.", "Keep it short.")


def instructed(problem: Problem, rng: random.Random, instructions: Sequence[str] = TRAILING_INSTRUCTIONS) -> Problem:
    """``problem`` with an instruction on how to answer after its question, on the same line or the next."""
    question = problem.question + rng.choice((" ", " ", "\n")) + rng.choice(instructions)
    return dataclasses.replace(problem, question=question)


def rephrased(problems: Sequence[Problem], templates: Sequence[str], tag: str) -> list[Problem]:
    """Each problem asked in one of ``templates``, drawn with a generator seeded by ``tag`` and its seed."""
    return [rephrase(p, random.Random(f"{tag}:{p.seed}"), templates) for p in problems]


WORDINGS = ("template", "held_out", "held_out_instruction")


def worded(problems: Sequence[Problem], wording: str, tag: str = "held_out") -> list[Problem]:
    """``problems`` as measured in ``wording``: reasoning-gym's template, a held-out question wording (drawn per
    problem, seeded by ``tag`` and its seed), or that wording followed by a held-out instruction."""
    if wording not in WORDINGS:
        raise ValueError(f"wording must be one of {', '.join(WORDINGS)}, got {wording!r}")
    if wording == "template":
        return list(problems)
    asked = rephrased(problems, HELD_OUT_QUESTIONS, tag)
    if wording == "held_out":
        return asked
    return [instructed(p, random.Random(f"instructed:{p.seed}"), HELD_OUT_INSTRUCTIONS) for p in asked]


def wide_question(rng: random.Random) -> str:
    """A question template (``{e}`` for the expression) composed of an opener, a request and a closer."""
    request = rng.choice(_WIDE_REQUESTS)
    opener = rng.choice(_WIDE_OPENERS)
    text = opener + (request if opener else request[0].upper() + request[1:])
    return text + rng.choice(_WIDE_CLOSERS)


_NOUNS = ("the sea", "autumn", "a cat", "my garden", "coffee", "the moon", "friendship", "an old house", "rain", "dogs")
_COUNTRIES = ("France", "Japan", "Brazil", "Kenya", "Canada", "Norway", "India", "Peru")
_CONCEPTS = ("love", "gravity", "democracy", "photosynthesis", "a black hole", "machine learning", "jazz", "inflation")
_TASKS = ("bake bread", "learn Spanish", "fix a flat tyre", "sleep better", "write a CV", "start running")
_LANGS = ("Spanish", "French", "German", "Italian")
_WORDS = ("cat", "house", "thank you", "good morning", "apple", "book")
_PLURALS = ("cats", "apples", "books", "friends", "ideas", "songs")

TRAIN_OFF_TOPIC = (
    "Hello",
    "Hi",
    "Hi there!",
    "Hello, who are you?",
    "Who are you?",
    "What is your name?",
    "How are you?",
    "Tell me a joke.",
    "Thanks!",
    "Good morning",
    "What time is it?",
    "Why is the sky blue?",
    "Write a poem about {noun}.",
    "What is the capital of {country}?",
    "What is {concept}?",
    "Explain {concept} to me.",
    "Translate '{word}' into {lang}.",
    "How do I {task}?",
    "Can you help me {task}?",
    "I have {n} {plural}.",
    "Tell me {n} facts about {plural}.",
    "What happened in {year}?",
    "Is {noun} good for you?",
    "Recommend {n} {plural}.",
    "Summarize this: I like {noun} and {plural}.",
    "what is {concept}",
    "{concept}?",
    # Numbers without an operation between them are not a sum either.
    "I was born in {year}.",
    "What was {year} like?",
    "Is {n} a lucky number?",
    "Count to {n}.",
    "My flight leaves at {n} pm.",
    "Top {n} films of {year}?",
    "Summarize chapter {n} for me.",
    "Call me at 555 {big}.",
    "Room {big} is where?",
    "Who was president in {year}?",
    "I am {age} years old.",
    "{n} {plural}",
    "Remind me at {n}:{minutes}.",
    "What is {year} in Roman numerals?",
)

HELD_OUT_OFF_TOPIC = (
    "Describe {noun} in one sentence.",
    "Where is {country}?",
    "What should I cook tonight?",
    "Can you write code to {task}?",
    "Who won the {year} World Cup?",
    "Good night!",
    "Give me advice about {concept}.",
    "Are you a robot?",
    "Name {n} {plural} you like.",
    "Why do people {task}?",
)

TRAIN_SYSTEM = (
    "You are a helpful assistant.",
    "You are a math tutor.",
    "Answer concisely.",
    "You are Ponder, an assistant that does arithmetic.",
    "Be brief and exact.",
)
HELD_OUT_SYSTEM = ("You are a careful calculator.", "Reply with the answer.")

# The wide set: who the assistant is, then zero to two instructions, as deployments write them. Five prompts taught
# the policy those five strings; held out, a new one cost it 6.5 points (docs/results/policy.md).
_SYSTEM_PERSONAS = (
    "You are a helpful assistant.",
    "You are a math tutor.",
    "You are Ponder, an assistant that does arithmetic.",
    "You are an AI assistant.",
    "You are a friendly chatbot.",
    "You are a teacher helping a student.",
    "You are an expert mathematician.",
    "You are a precise assistant.",
    "You are a large language model trained to help people.",
    "You help students with homework.",
    "You are a support agent.",
    "You are a coding assistant.",
    "You are a patient, kind helper.",
    "You are an accountant.",
    "You are Max, a virtual assistant.",
    "",
)
_SYSTEM_INSTRUCTIONS = (
    "Answer concisely.",
    "Be brief and exact.",
    "Think step by step.",
    "Keep answers short.",
    "Double-check your work.",
    "Respond in English.",
    "Be polite.",
    "Give only the final number.",
    "Explain your reasoning.",
    "Today is Monday.",
    "Current date: 2025-03-14.",
    "Do not make things up.",
    "Use plain text.",
    "Be accurate.",
    "Always be honest.",
)


def wide_system_prompt(rng: random.Random) -> str:
    """A system prompt drawn from personas and instructions (none of them held out), never empty."""
    parts = [rng.choice(_SYSTEM_PERSONAS), *rng.sample(_SYSTEM_INSTRUCTIONS, rng.randint(0, 2))]
    text = " ".join(p for p in parts if p)
    return text or rng.choice(TRAIN_SYSTEM)


def expression_text(expression: str, rng: random.Random) -> str:
    """``expression`` as a person might type it: spaced or not, ``x`` or words for the operators."""
    tokens = expression.split()
    style = rng.random()
    if style < 0.15:
        return " ".join(_OP_WORDS.get(t, t) for t in tokens)
    if style < 0.25 and "*" in tokens:
        tokens = ["x" if t == "*" else t for t in tokens]
    return ("" if rng.random() < 0.4 else " ").join(tokens)


def rephrase(problem: Problem, rng: random.Random, templates: Sequence[str] = TRAIN_QUESTIONS) -> Problem:
    """``problem`` asked in one of ``templates`` instead of reasoning-gym's wording (answer and grading unchanged)."""
    question = rng.choice(templates).format(e=expression_text(problem.expression, rng))
    return dataclasses.replace(problem, question=question)


def off_topic_prompt(rng: random.Random, templates: Sequence[str] = TRAIN_OFF_TOPIC) -> str:
    """A prompt that is not an arithmetic question (some with numbers in it: digits alone do not make a sum)."""
    text = rng.choice(templates).format(
        noun=rng.choice(_NOUNS),
        country=rng.choice(_COUNTRIES),
        concept=rng.choice(_CONCEPTS),
        task=rng.choice(_TASKS),
        lang=rng.choice(_LANGS),
        word=rng.choice(_WORDS),
        plural=rng.choice(_PLURALS),
        n=rng.randint(2, 12),
        year=rng.randint(1900, 2024),
        big=rng.randint(100, 9999),
        age=rng.randint(5, 90),
        minutes=f"{rng.randint(0, 59):02d}",
    )
    return text.lower() if rng.random() < 0.15 else text


def two_term_problem(split: str, seed: int) -> Problem:
    """Two numbers of one or two digits each, drawn independently, added or subtracted (``12 + 7``, ``7 - 12``); or
    a one-digit number times a two-digit one, in either order (``3 * 41``).

    reasoning-gym draws one digit count per chain and always puts the longer factor first; people do neither.
    """
    rng = random.Random(seed)
    a, b = (rng.randint(*((0, 9) if rng.random() < 0.5 else (10, 99))) for _ in range(2))
    op = rng.choices("+-*", weights=(0.45, 0.35, 0.2))[0]
    if op == "*":
        a, b = rng.randint(2, 9), rng.randint(10, 99)
        a, b = (a, b) if rng.random() < 0.5 else (b, a)
        return Problem(
            split=split,
            seed=seed,
            level=2,
            task="products",
            question=f"Solve the following multiplication: {a} * {b}. Give only the result as your final answer.",
            answer=str(a * b),
            expression=f"{a} * {b}",
        )
    expression = f"{a} {op} {b}"
    return Problem(
        split=split,
        seed=seed,
        level=1 if max(a, b) < 10 else 2,
        task="chain_sum",
        question=f"State the final answer to the following arithmetic problem: {expression} =",
        answer=str(a + b if op == "+" else a - b),
        expression=expression,
    )
