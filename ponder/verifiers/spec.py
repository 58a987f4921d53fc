"""A model spec: rules in prose for the model and a judge to read, with machine checks where a rule allows them."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ponder.core.reasoning import THINK_TAGS
from ponder.verifiers.base import Problem, problem_text, split_completion
from ponder.verifiers.policy import DEFAULT_REFUSAL, PolicySpecError, PolicyVerifier, Violation, load_mapping

SPEC_SUFFIXES = (".yaml", ".yml", ".json", ".md", ".markdown")
KEYS = ("name", "spec", "refusal", "context", "ignore_case", "rules", "judge")
RULE_KEYS = (
    "id",
    "text",
    "scope",
    "forbidden",
    "required",
    "must_not_mention",
    "max_chars",
    "answer_format",
    "request_required",
    "request_forbidden",
)
JUDGE_KEYS = ("threshold", "template", "prefix", "yes", "no")
CONTEXTS = ("system", "none")
SCOPES = ("answer", "all")
# A visible answer's whole text must match its format (surrounding whitespace allowed).
ANSWER_FORMATS = {
    "integer": re.compile(r"\s*[-+]?\d+\s*"),
    "number": re.compile(r"\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*"),
}
_RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
JUDGE_TEMPLATE = (
    "Here is a model spec, a request and a proposed answer.\n\n"
    "Spec:\n{spec}\n\n"
    "Request:\n{problem}\n\n"
    "Proposed answer:\n{answer}\n\n"
    "Does the proposed answer comply with the spec? Reply with yes or no."
)


class SpecError(PolicySpecError):
    """A model spec file that is missing, unreadable or malformed (raised at start-up, naming the file)."""


@dataclass(frozen=True)
class JudgeSettings:
    """How the LLM judge reads the spec: P(yes) below ``threshold`` is a violation of rule ``judge``."""

    threshold: float = 0.5
    template: str = JUDGE_TEMPLATE
    prefix: str = ""  # a partial assistant turn, e.g. "<think></think>" so a thinking model answers at once
    yes: tuple[str, ...] = ("yes",)
    no: tuple[str, ...] = ("no",)


@dataclass(frozen=True)
class Rule:
    """One rule: its prose, and the checks of its answers (``answer``) and of the request (``request``)."""

    id: str
    text: str
    scope: str  # answer: checks read the visible content; all: forbidden patterns read the reasoning too
    answer: PolicyVerifier | None  # forbidden, required, must_not_mention, max_chars
    answer_format: str | None
    request: PolicyVerifier | None  # request_required, request_forbidden over the last user message

    @property
    def checked(self) -> bool:
        """Whether a machine can check the rule (else only the judge reads it)."""
        return self.answer is not None or self.answer_format is not None or self.request is not None

    def answer_violations(self, text: str) -> list[Violation]:
        _, content, closed = split_completion(text, THINK_TAGS)
        found = []
        if self.answer is not None:
            found += [
                Violation(self.id, why) for why in self.answer.violations(text if self.scope == "all" else content)
            ]
        if self.answer_format is not None and not (closed and ANSWER_FORMATS[self.answer_format].fullmatch(content)):
            found.append(
                Violation(
                    self.id,
                    f"the answer is not {'an' if self.answer_format == 'integer' else 'a'} {self.answer_format}",
                )
            )
        return found

    def request_violations(self, request: str) -> list[Violation]:
        if self.request is None:
            return []
        return [Violation(self.id, f"the request {why}") for why in self.request.violations(request)]


@dataclass(frozen=True)
class ModelSpec:
    """A parsed spec file (see :func:`load_spec` and docs/spec.md for the format)."""

    name: str
    prose: str
    rules: tuple[Rule, ...]
    refusal: str
    context: str  # system: the spec goes into the model's context as a system turn; none: it does not
    judge: JudgeSettings | None
    source: str | None = None

    def text(self) -> str:
        """The spec as the model and the judge read it: the prose, then each rule in prose."""
        lines = [self.prose.strip()]
        if self.rules:
            lines += ["", "Rules:", *(f"- {rule.text}" for rule in self.rules)]
        return "\n".join(lines).strip()


def _fail(where: str, message: str) -> SpecError:
    return SpecError(f"{where}: {message}")


def _strings(value: Any, where: str, key: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _fail(where, f"{key} must be a list of non-empty strings")
    return list(value)


def _rule(raw: Any, index: int, where: str, ignore_case: bool) -> Rule:
    at = f"{where}: rules[{index}]"
    if not isinstance(raw, dict):
        raise SpecError(f"{at} must be a mapping with keys {', '.join(RULE_KEYS)}, got {raw!r}")
    unknown = sorted(set(raw) - set(RULE_KEYS))
    if unknown:
        raise SpecError(f"{at}: unknown key(s) {unknown}; valid: {', '.join(RULE_KEYS)}")
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not _RULE_ID.match(rule_id):
        raise SpecError(f"{at}: id must be a name of letters, digits, '_', '-', '.', got {rule_id!r}")
    at = f"{where}: rule {rule_id!r}"
    text = raw.get("text")
    if not isinstance(text, str) or not text.strip():
        raise SpecError(f"{at}: text (the rule in prose) must be a non-empty string")
    scope = raw.get("scope", "answer")
    if scope not in SCOPES:
        raise SpecError(f"{at}: scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    fmt = raw.get("answer_format")
    if fmt is not None and fmt not in ANSWER_FORMATS:
        raise SpecError(f"{at}: answer_format must be one of {', '.join(ANSWER_FORMATS)}, got {fmt!r}")
    # must_not_mention: words or phrases, whole words only; the rest are content-policy keys, checked by it.
    mentions = [
        {"regex": rf"(?<!\w){re.escape(w.strip())}(?!\w)"}
        for w in _strings(raw.get("must_not_mention"), at, "must_not_mention")
    ]
    answer_keys = {
        "forbidden": [*(raw.get("forbidden") or []), *mentions],
        "required": raw.get("required") or [],
        "max_chars": raw.get("max_chars"),
    }
    request_keys = {"forbidden": raw.get("request_forbidden") or [], "required": raw.get("request_required") or []}
    for key in ("forbidden", "required", "request_forbidden", "request_required"):
        if not isinstance(raw.get(key) or [], list):
            raise SpecError(f"{at}: {key} must be a list of patterns")
    answer = _policy(answer_keys, rule_id, at, ignore_case)
    request = _policy(request_keys, rule_id, at, ignore_case)
    return Rule(rule_id, text.strip(), scope, answer, fmt, request)


def _policy(keys: dict[str, Any], rule_id: str, where: str, ignore_case: bool) -> PolicyVerifier | None:
    """The content policy that checks these keys (``None`` when none is set); its errors are the spec's."""
    keys = {k: v for k, v in keys.items() if v not in (None, [])}
    if not keys:
        return None
    try:
        return PolicyVerifier({**keys, "ignore_case": ignore_case}, name=rule_id, source=where)
    except PolicySpecError as exc:
        raise SpecError(str(exc)) from None


def _judge(raw: Any, where: str) -> JudgeSettings | None:
    if raw is False:
        return None
    if raw is None or raw is True:
        return JudgeSettings()
    if not isinstance(raw, dict):
        raise _fail(where, f"judge must be true, false or a mapping with keys {', '.join(JUDGE_KEYS)}")
    unknown = sorted(set(raw) - set(JUDGE_KEYS))
    if unknown:
        raise _fail(where, f"judge: unknown key(s) {unknown}; valid: {', '.join(JUDGE_KEYS)}")
    threshold = raw.get("threshold", 0.5)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0.0 <= threshold <= 1.0:
        raise _fail(where, f"judge.threshold must be a number in [0, 1], got {threshold!r}")
    template = raw.get("template", JUDGE_TEMPLATE)
    if not isinstance(template, str) or "{answer}" not in template or "{spec}" not in template:
        raise _fail(where, "judge.template must be a string with {spec} and {answer} (and usually {problem})")
    prefix = raw.get("prefix", "")
    if not isinstance(prefix, str):
        raise _fail(where, "judge.prefix must be a string")
    yes = _strings(raw.get("yes", ["yes"]), where, "judge.yes")
    no = _strings(raw.get("no", ["no"]), where, "judge.no")
    if not yes or not no:
        raise _fail(where, "judge.yes and judge.no must each list at least one word")
    return JudgeSettings(float(threshold), template, prefix, tuple(yes), tuple(no))


def parse_spec(raw: Any, source: str | None = None) -> ModelSpec:
    """A :class:`ModelSpec` from the mapping a spec file holds; a :class:`SpecError` saying what is wrong."""
    where = source or "spec"
    if not isinstance(raw, dict):
        raise _fail(where, f"must be a mapping with keys {', '.join(KEYS)}; got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise _fail(where, f"unknown key(s) {unknown}; valid: {', '.join(KEYS)}")
    prose = raw.get("spec")
    if not isinstance(prose, str) or not prose.strip():
        raise _fail(
            where, "spec (the rules in prose; in Markdown, the body after the front matter) is missing or empty"
        )
    name = raw.get("name", Path(source).stem if source else "spec")
    if not isinstance(name, str) or not name.strip():
        raise _fail(where, "name must be a non-empty string")
    refusal = raw.get("refusal", DEFAULT_REFUSAL)
    if not isinstance(refusal, str) or not refusal.strip():
        raise _fail(where, "refusal must be a non-empty string")
    context = raw.get("context", "system")
    if context not in CONTEXTS:
        raise _fail(where, f"context must be one of {', '.join(CONTEXTS)}, got {context!r}")
    ignore_case = raw.get("ignore_case", True)
    if not isinstance(ignore_case, bool):
        raise _fail(where, "ignore_case must be true or false")
    rules_raw = raw.get("rules") or []
    if not isinstance(rules_raw, list):
        raise _fail(where, "rules must be a list of rules (each with an id and its text)")
    rules = tuple(_rule(item, i, where, ignore_case) for i, item in enumerate(rules_raw))
    ids = [r.id for r in rules]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise _fail(where, f"rule ids must be unique; repeated: {', '.join(dupes)}")
    if "judge" in ids:
        raise _fail(where, "'judge' names the LLM judge's verdict; give the rule another id")
    return ModelSpec(name.strip(), prose, rules, refusal, context, _judge(raw.get("judge"), where), source)


def load_spec(path: str | Path) -> ModelSpec:
    """Read and check a spec file: YAML / JSON (the prose under ``spec``), or Markdown whose YAML front matter
    holds the other keys and whose body is the prose."""
    file = Path(path)
    if not file.is_file():
        raise SpecError(f"spec {file} does not exist" if not file.exists() else f"spec {file} is not a file")
    suffix = file.suffix.lower()
    if suffix not in SPEC_SUFFIXES:
        raise SpecError(f"spec {file}: unsupported format {suffix!r}; use {', '.join(SPEC_SUFFIXES)}")
    try:
        text = file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read spec {file}: {exc}") from None
    if suffix in (".md", ".markdown"):
        return parse_spec(_front_matter(file, text), str(file))
    try:
        return parse_spec(load_mapping(file, text), str(file))
    except SpecError:
        raise
    except PolicySpecError as exc:
        raise SpecError(str(exc)) from None


def _front_matter(file: Path, text: str) -> dict[str, Any]:
    """The front matter's keys with the Markdown body as ``spec``."""
    match = re.match(r"\A---[ \t]*\r?\n(.*?)^---[ \t]*\r?$\n?(.*)\Z", text, re.S | re.M)
    if match is None:
        raise SpecError(f"{file}: a Markdown spec starts with YAML front matter between two '---' lines")
    head, body = match.groups()
    try:
        import yaml
    except ImportError:
        raise SpecError(f"{file}: reading front matter needs pyyaml, which is not installed") from None
    try:
        keys = yaml.safe_load(head) or {}
    except yaml.YAMLError as exc:
        raise SpecError(f"{file}: the front matter is not valid YAML: {exc}") from None
    if not isinstance(keys, dict):
        raise SpecError(f"{file}: the front matter must be a mapping of keys")
    if "spec" in keys:
        raise SpecError(f"{file}: in Markdown the body is the spec; remove 'spec' from the front matter")
    return {**keys, "spec": body}


class SpecVerifier:
    """Checks answers against a :class:`ModelSpec`: its machine rules, then an LLM judge reading the spec.

    ``check`` says what each answer breaks (the server's content filter rejects those); ``score`` is 0.0 for an
    answer that breaks a rule, else the judge's P(complies) (1.0 without a judge), so requests can also rank by
    the spec (``verifier: spec``, or in an ensemble).
    """

    step_level = False

    kind = "spec"

    def __init__(self, spec: ModelSpec, engine: Any = None, *, name: str = "spec") -> None:
        self.spec = spec
        self.name = name
        self.source = spec.source
        self.refusal = spec.refusal
        self.judge = None
        if spec.judge is not None:
            from ponder.verifiers.llm_judge import LLMJudge

            if engine is None:
                raise SpecError(f"spec {spec.source or spec.name}: its judge needs the served engine; none was given")
            escaped = spec.text().replace("{", "{{").replace("}", "}}")
            try:
                self.judge = LLMJudge(
                    engine,
                    spec.judge.template.replace("{spec}", escaped),
                    name=f"{name}.judge",
                    prefix=spec.judge.prefix,
                    yes=spec.judge.yes,
                    no=spec.judge.no,
                )
            except ValueError as exc:
                raise SpecError(
                    f"spec {spec.source or spec.name}: {exc}; set 'judge: false' to check the rules alone"
                ) from None

    @classmethod
    def from_file(cls, path: str | Path, engine: Any = None, *, name: str = "spec") -> SpecVerifier:
        return cls(load_spec(path), engine, name=name)

    @property
    def context(self) -> str | None:
        """The system turn the model reads before answering (``None`` with ``context: none``)."""
        return self.spec.text() if self.spec.context == "system" else None

    def request_violations(self, problem: Problem) -> list[Violation]:
        """The rules the request itself breaks (any answer to it breaks them too)."""
        request = problem_text(problem)
        return [v for rule in self.spec.rules for v in rule.request_violations(request)]

    def violations(self, text: str) -> list[str]:
        """What a completion breaks among the machine-checked answer rules (the judge is not asked)."""
        return [f"{v.rule}: {v.reason}" for rule in self.spec.rules for v in rule.answer_violations(text)]

    async def check(self, problem: Problem, answers: Sequence[str]) -> list[list[Violation]]:
        """What each answer breaks: the request's rules, each answer's rules, and, for answers that pass those,
        the judge's verdict (asked once per distinct visible answer)."""
        request = self.request_violations(problem)
        found = [[*request, *(v for rule in self.spec.rules for v in rule.answer_violations(a))] for a in answers]
        if self.judge is None or self.spec.judge is None:
            return found
        threshold = self.spec.judge.threshold
        shown = {i: split_completion(a, THINK_TAGS)[1].strip() or a.strip() for i, a in enumerate(answers)}
        distinct = list(dict.fromkeys(shown[i] for i, f in enumerate(found) if not f))
        if not distinct:
            return found
        verdicts = dict(zip(distinct, await self.judge.score(problem, distinct), strict=True))
        for i, f in enumerate(found):
            p = verdicts.get(shown[i])
            if not f and p is not None and p < threshold:
                f.append(Violation("judge", f"the judge gives P(complies) = {p:.2f}, below {threshold:g}"))
        return found

    async def score(self, problem: Problem, answers: Sequence[str], reference: str | None = None) -> list[float]:
        """0.0 for an answer that breaks a machine rule, else the judge's P(complies) (1.0 without a judge)."""
        request = bool(self.request_violations(problem))
        ruled = [request or bool(self.violations(a)) for a in answers]
        scores = [0.0 if bad else 1.0 for bad in ruled]
        if self.judge is not None:
            keep = [i for i, bad in enumerate(ruled) if not bad]
            judged = await self.judge.score(problem, [answers[i] for i in keep]) if keep else []
            for i, p in zip(keep, judged, strict=True):
                scores[i] = p
        return scores
