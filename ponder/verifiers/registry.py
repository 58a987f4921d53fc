"""Parse ``--verifier NAME=SOURCE[:KIND[,OPT=VALUE...]]`` specs, load verifiers, and hold them in a ``VerifierSet``.

Grammar (one spec per ``--verifier``)::

    prm=models/prm                      a model folder; kind from its ponder.json or config.json architectures
    orm=models/orm:orm                  or a kind: orm, prm, prm-generative (ponder train genprm), prm-step-tag
                                        (Math-Shepherd), prm-qwen (Qwen2.5-Math-PRM)
    prm=models/prm:prm,agg=last,device=cpu   options after the kind: agg (PRM step aggregation), device, threads
                                        (torch threads of its forward passes, default 1), cache_mb (MiB of recent
                                        questions' KV caches a generative PRM or token-pooled ORM keeps, default 64),
                                        answer=on|off (a generative PRM reads a finished solution's answer too:
                                        default on)
    safety=policy.yaml                  a .yaml / .yml / .json file is a content policy (kind policy)
    rule=math_rule   calc=calculator   judge=llm_judge    the built-ins; a bare built-in name names itself
    mix=ensemble:prm*0.7+orm*0.3        weighted sum of loaded verifiers, each min-max normalised per batch
    raw=ensemble-raw:prm+orm*0.5        the same without normalisation (a missing weight is 1)
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ponder.core.aggregate import AGGREGATIONS
from ponder.core.errors import InvalidRequestError
from ponder.verifiers.base import Verifier, VerifierInfo, describe
from ponder.verifiers.hf import (
    DEFAULT_THREADS,
    QUESTION_CACHE_BYTES,
    VerifierLoadError,
    check_model_folder,
    read_json,
    read_sidecar,
)

log = logging.getLogger("ponder.verifiers")

MODEL_KINDS = ("orm", "prm", "prm-generative", "prm-step-tag", "prm-qwen")
BUILTINS = ("math_rule", "calculator", "llm_judge")
ENSEMBLES = ("ensemble", "ensemble-raw")
KINDS = (*MODEL_KINDS, "policy", *BUILTINS, *ENSEMBLES)
POLICY_SUFFIXES = (".yaml", ".yml", ".json")
OPTIONS = {"orm": ("device", "threads", "cache_mb"), "prm": ("agg", "device", "threads", "cache_mb", "answer")}
_PRM_FORMAT = {"prm": None, "prm-step-tag": "step_tag", "prm-qwen": "qwen"}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_TERM = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*(?:\*\s*([^*+\s]+)\s*)?$")


class VerifierSpecError(VerifierLoadError):
    """A ``--verifier`` spec that does not parse."""


class UnknownVerifierError(InvalidRequestError, KeyError):
    """A request named a verifier that is not loaded (400, ``param="verifier"``); the message lists the valid ones."""

    def __init__(self, message: str) -> None:
        super().__init__(message, param="verifier")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


@dataclass(frozen=True)
class VerifierSpec:
    """One parsed ``--verifier`` spec."""

    name: str
    source: str  # a path, a built-in name, or an ensemble's terms
    kind: str | None = None  # None: detect from the path
    options: dict[str, str] = field(default_factory=dict)
    members: tuple[tuple[str, float], ...] = ()  # ensembles: (verifier name, weight)


def parse_spec(text: str) -> VerifierSpec:
    """Parse one ``--verifier`` value; a :class:`VerifierSpecError` saying what is wrong otherwise."""
    raw = text.strip()
    if not raw:
        raise VerifierSpecError("empty --verifier spec; expected NAME=PATH[:KIND], e.g. prm=models/prm")
    if "=" not in raw:
        if raw in BUILTINS:
            return VerifierSpec(raw, raw, raw)
        raise VerifierSpecError(
            f"--verifier {raw!r}: expected NAME=PATH[:KIND] (e.g. prm=models/prm) or a built-in ({', '.join(BUILTINS)})"
        )
    name, source = (part.strip() for part in raw.split("=", 1))
    if not _NAME.match(name):
        raise VerifierSpecError(
            f"--verifier {raw!r}: invalid name {name!r}; use letters, digits, '_', '-', '.' (not first)"
        )
    if not source:
        raise VerifierSpecError(
            f"--verifier {raw!r}: nothing after '='; expected a path or one of {', '.join(BUILTINS)}"
        )
    head, colon, tail = source.partition(":")
    if head in ENSEMBLES:
        if not colon or not tail.strip():
            raise VerifierSpecError(
                f"--verifier {raw!r}: an ensemble needs members, e.g. {name}=ensemble:prm*0.7+orm*0.3"
            )
        return VerifierSpec(name, tail, head, members=_parse_terms(tail, raw))
    if head in BUILTINS:
        if colon:
            raise VerifierSpecError(f"--verifier {raw!r}: the built-in {head} takes no kind or options")
        return VerifierSpec(name, head, head)
    path, kind, options = source, None, {}
    if ":" in source and not Path(source).exists():
        path, tail = source.rsplit(":", 1)
        kind, *opts = (piece.strip() for piece in tail.split(","))
        if kind not in KINDS or kind in BUILTINS or kind in ENSEMBLES:
            valid = (*MODEL_KINDS, "policy")
            raise VerifierSpecError(f"--verifier {raw!r}: unknown kind {kind!r}; valid kinds: {', '.join(valid)}")
        options = _parse_options(opts, kind, raw)
    return VerifierSpec(name, path, kind, options)


def _parse_terms(text: str, raw: str) -> tuple[tuple[str, float], ...]:
    terms = []
    for piece in text.split("+"):
        match = _TERM.match(piece)
        if not match:
            raise VerifierSpecError(
                f"--verifier {raw!r}: bad ensemble term {piece.strip()!r}; expected NAME or NAME*WEIGHT"
            )
        member, weight_text = match.groups()
        try:
            weight = float(weight_text) if weight_text is not None else 1.0
        except ValueError:
            weight = math.nan
        if not math.isfinite(weight):
            raise VerifierSpecError(f"--verifier {raw!r}: weight {weight_text!r} of {member!r} is not a finite number")
        terms.append((member, weight))
    names = [m for m, _ in terms]
    if len(set(names)) != len(names):
        raise VerifierSpecError(f"--verifier {raw!r}: an ensemble lists a member twice")
    return tuple(terms)


def _parse_options(pieces: list[str], kind: str, raw: str) -> dict[str, str]:
    valid = OPTIONS.get("prm" if kind.startswith("prm") else kind, ())
    options = {}
    for piece in pieces:
        key, eq, value = (p.strip() for p in piece.partition("="))
        if key not in valid or not eq or not value:
            allowed = ", ".join(f"{k}=VALUE" for k in valid) or "none"
            raise VerifierSpecError(
                f"--verifier {raw!r}: bad option {piece!r} for kind {kind}; valid options: {allowed}"
            )
        if key == "agg" and value not in AGGREGATIONS:
            raise VerifierSpecError(
                f"--verifier {raw!r}: unknown aggregation {value!r}; valid: {', '.join(AGGREGATIONS)}"
            )
        if key == "threads" and not (value.isdigit() and 1 <= int(value) <= 256):
            raise VerifierSpecError(f"--verifier {raw!r}: threads must be a whole number from 1 to 256, got {value!r}")
        if key == "cache_mb" and not (value.isdigit() and int(value) <= 65536):
            raise VerifierSpecError(
                f"--verifier {raw!r}: cache_mb must be a whole number from 0 (keep none) to 65536, got {value!r}"
            )
        if key == "answer" and value not in ("on", "off"):
            raise VerifierSpecError(f"--verifier {raw!r}: answer must be on or off, got {value!r}")
        if key == "answer" and kind not in ("prm", "prm-generative"):
            raise VerifierSpecError(f"--verifier {raw!r}: answer applies to generative PRMs only")
        options[key] = value
    return options


def _unique(parsed: list[VerifierSpec]) -> list[VerifierSpec]:
    names = [s.name for s in parsed]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise VerifierSpecError(f"--verifier names must be unique; repeated: {', '.join(dupes)}")
    return parsed


def check_specs(specs: Sequence[str]) -> list[VerifierSpec]:
    """Parse ``--verifier`` specs and check their paths and kinds without loading weights, so a server can refuse
    bad flags before it starts its engine. Raises :class:`VerifierLoadError` naming the first bad spec."""
    parsed = _unique([parse_spec(text) for text in specs])
    for spec in parsed:
        if spec.kind in BUILTINS or spec.kind in ENSEMBLES:
            continue
        if spec.kind is None:
            detect_kind(spec.source)
        elif not Path(spec.source).exists():
            raise VerifierLoadError(f"verifier path {spec.source} does not exist")
        elif spec.kind != "policy":
            check_model_folder(Path(spec.source))
    return parsed


def detect_kind(path: str | Path) -> str:
    """The kind of a verifier path: a policy file, or a model folder's kind from ponder.json / config.json."""
    where = Path(path)
    if not where.exists():
        raise VerifierLoadError(f"verifier path {where} does not exist")
    if where.is_file():
        if where.suffix.lower() in POLICY_SUFFIXES:
            return "policy"
        raise VerifierLoadError(f"{where} is a file but not a policy spec (.yaml, .yml, .json) nor a model folder")
    folder = check_model_folder(where)
    sidecar = read_sidecar(folder)
    kind = sidecar.get("kind")
    if kind == "orm":
        return "orm"
    if kind == "prm":
        return {"step_tag": "prm-step-tag", "qwen": "prm-qwen", "generative": "prm-generative"}.get(
            sidecar.get("format"), "prm"
        )
    if kind is not None:
        raise VerifierLoadError(f"{folder}: ponder.json has kind {kind!r}; a verifier folder has kind orm or prm")
    architectures = [str(a) for a in read_json(folder / "config.json").get("architectures") or []]
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return "orm"
    if any(a.endswith("ForTokenClassification") for a in architectures):
        return "prm"
    if any(a.endswith("ForProcessRewardModel") for a in architectures):
        raise VerifierLoadError(
            f"{folder}: {architectures[0]} needs its own remote code, which cannot be loaded offline; "
            "save it as a two-label token-classification model and pass :prm-qwen"
        )
    if any(a.endswith("ForCausalLM") for a in architectures):
        raise VerifierLoadError(
            f"{folder} is a causal language model (a policy?), not a reward model; "
            "if it is a Math-Shepherd style PRM, pass :prm-step-tag"
        )
    raise VerifierLoadError(
        f"{folder}: cannot tell what verifier this is (architectures: {architectures or 'none'}, no ponder.json kind); "
        f"pass :KIND, one of {', '.join(MODEL_KINDS)}"
    )


def load_verifier(
    spec: VerifierSpec | str, *, engine: Any = None, loaded: Mapping[str, Verifier] | None = None
) -> Verifier:
    """Build the verifier a spec names; ``engine`` serves ``llm_judge``, ``loaded`` resolves ensemble members."""
    from ponder.verifiers.ensemble import make_ensemble

    spec = parse_spec(spec) if isinstance(spec, str) else spec
    kind = spec.kind or detect_kind(spec.source)
    if kind == "math_rule":
        from ponder.verifiers.math_rule import MathRule

        return MathRule(spec.name)
    if kind == "calculator":
        from ponder.verifiers.calculator import Calculator

        return Calculator(spec.name)
    if kind == "llm_judge":
        if engine is None:
            raise VerifierLoadError(f"verifier {spec.name!r}: llm_judge needs the served engine, and none was given")
        from ponder.verifiers.llm_judge import LLMJudge

        try:
            return LLMJudge(engine, name=spec.name)
        except ValueError as exc:
            raise VerifierLoadError(f"verifier {spec.name!r}: {exc}") from None
    if kind in ENSEMBLES:
        available = dict(loaded or {})
        missing = [m for m, _ in spec.members if m not in available]
        if missing:
            raise VerifierLoadError(
                f"ensemble {spec.name!r}: unknown member(s) {missing}; "
                f"loaded verifiers: {', '.join(available) or 'none'}"
            )
        members = [(available[m], w) for m, w in spec.members]
        return make_ensemble(members, name=spec.name, normalize=kind == "ensemble")
    if kind == "policy":
        from ponder.verifiers.policy import PolicyVerifier

        return PolicyVerifier.from_file(spec.source, name=spec.name)
    if kind in MODEL_KINDS:
        return _load_model(spec, kind)
    raise VerifierSpecError(f"unknown verifier kind {kind!r}; valid kinds: {', '.join(KINDS)}")


def _load_model(spec: VerifierSpec, kind: str) -> Verifier:
    """A verifier held in a model folder: an ORM, a generative PRM, or a classifier PRM of one of the step formats."""
    device, threads = spec.options.get("device"), int(spec.options.get("threads", DEFAULT_THREADS))
    cache = int(spec.options["cache_mb"]) << 20 if "cache_mb" in spec.options else None
    if kind == "orm":
        from ponder.verifiers.orm_pooled import open_orm

        return open_orm(spec.source, name=spec.name, device=device, threads=threads, question_cache_bytes=cache)
    aggregation = spec.options.get("agg", "min")
    if kind == "prm-generative":
        from ponder.verifiers.generative_prm import GenerativePRM

        return GenerativePRM(
            spec.source,
            name=spec.name,
            aggregation=aggregation,
            device=device,
            threads=threads,
            question_cache_bytes=QUESTION_CACHE_BYTES if cache is None else cache,
            scores_answer=spec.options.get("answer", "on") == "on",
        )
    if cache is not None:
        raise VerifierLoadError(f"verifier {spec.name!r}: a classifier PRM keeps no questions; cache_mb does not apply")
    if "answer" in spec.options:
        raise VerifierLoadError(f"verifier {spec.name!r}: a classifier PRM reads no answer; answer= does not apply")
    from ponder.verifiers.prm import ProcessRewardModel

    return ProcessRewardModel(
        spec.source, name=spec.name, format=_PRM_FORMAT[kind], aggregation=aggregation, device=device, threads=threads
    )


class VerifierSet:
    """The loaded verifiers by name, the default one, and the names that were not available (with why).

    ``default`` is what a request without ``verifier`` gets: the explicit ``default`` name if given, else the
    PRM (a verifier named ``prm``, else the first of kind prm), else the ORM likewise, else ``math_rule``.
    """

    def __init__(
        self,
        verifiers: Mapping[str, Verifier] | Iterable[Verifier] = (),
        *,
        engine: Any = None,
        default: str | None = None,
    ) -> None:
        self.engine = engine
        self._verifiers: dict[str, Verifier] = {}
        self.unavailable: dict[str, str] = {}  # name -> why it was not loaded (told to clients that ask for it)
        items = verifiers.items() if isinstance(verifiers, Mapping) else ((v.name, v) for v in verifiers)
        for name, verifier in items:
            self.add(verifier, name=name)
        self._default: str | None = None
        if default is not None:
            self.set_default(default)

    def set_default(self, name: str) -> None:
        """Make ``name`` what a request without ``verifier`` gets; it must be loaded."""
        if name not in self._verifiers:
            raise VerifierLoadError(f"default verifier {name!r} is not loaded; loaded: {', '.join(self.names())}")
        self._default = name

    def add(self, verifier: Verifier, *, name: str | None = None) -> None:
        key = name or verifier.name
        if key in self._verifiers:
            raise VerifierLoadError(f"two verifiers are named {key!r}")
        self._verifiers[key] = verifier
        self.unavailable.pop(key, None)

    def get(self, name: str) -> Verifier:
        """The verifier called ``name``; an :class:`UnknownVerifierError` listing the loaded ones otherwise."""
        try:
            return self._verifiers[name]
        except KeyError:
            pass
        if name in self.unavailable:
            raise UnknownVerifierError(f"Verifier '{name}' is not available on this server: {self.unavailable[name]}.")
        valid = ", ".join(f"'{n}'" for n in self._verifiers)
        raise UnknownVerifierError(
            f"Unknown verifier '{name}'. "
            + (f"Valid verifiers: {valid}." if valid else "No verifiers are loaded on this server.")
        )

    def names(self) -> list[str]:
        return list(self._verifiers)

    def __contains__(self, name: object) -> bool:
        return name in self._verifiers

    def __len__(self) -> int:
        return len(self._verifiers)

    def describe(self) -> list[VerifierInfo]:
        return [describe(v) for v in self._verifiers.values()]

    @property
    def default_name(self) -> str | None:
        if self._default is not None:
            return self._default
        infos = self.describe()
        for kind in ("prm", "orm"):
            if kind in self._verifiers and describe(self._verifiers[kind]).kind == kind:
                return kind
            first = next((info.name for info in infos if info.kind == kind), None)
            if first is not None:
                return first
        return "math_rule" if "math_rule" in self._verifiers else None

    @property
    def default(self) -> Verifier | None:
        name = self.default_name
        return self._verifiers[name] if name is not None else None

    def policies(self) -> list[Any]:
        """The loaded model spec (``SpecVerifier``, first: its refusal wins) and content policies (``PolicyVerifier``),
        which the server applies as a hard filter."""
        found = [v for v in self._verifiers.values() if getattr(v, "kind", None) in ("spec", "policy")]
        return sorted(found, key=lambda v: v.kind != "spec")  # stable: the order of loading otherwise

    @classmethod
    def from_specs(
        cls,
        specs: Sequence[str | VerifierSpec],
        *,
        engine: Any = None,
        models_dir: str | Path | None = None,
        default: str | None = None,
    ) -> VerifierSet:
        """The defaults of ``models_dir`` (when given; see :func:`default_verifiers`) plus ``specs``.

        A spec with a default's name replaces it (that default is not loaded at all); ensembles are built
        last, in order, so they may name any other verifier, including earlier ensembles.
        """
        parsed = _unique([parse_spec(s) if isinstance(s, str) else s for s in specs])
        names = [s.name for s in parsed]
        vset = (
            default_verifiers(models_dir, engine=engine, skip=set(names))
            if models_dir is not None
            else cls(engine=engine)
        )
        for spec in sorted(parsed, key=lambda s: s.kind in ENSEMBLES):  # stable: ensembles last, in order
            vset.add(load_verifier(spec, engine=engine, loaded=vset._verifiers), name=spec.name)
        if default is not None:
            vset.set_default(default)
        return vset

    async def aclose(self) -> None:
        """Release every verifier that holds resources (model worker threads)."""
        for verifier in self._verifiers.values():
            close = getattr(verifier, "aclose", None)
            if close is not None:
                await close()

    def __repr__(self) -> str:
        return f"VerifierSet({self.names()}, default={self.default_name!r})"


def default_verifiers(models_dir: str | Path, *, engine: Any = None, skip: Iterable[str] = ()) -> VerifierSet:
    """``models_dir/orm`` and ``models_dir/prm`` when they exist, ``math_rule``, ``calculator``, and ``llm_judge``.

    The judge needs an engine that returns logprobs; without one it is left out and listed in ``unavailable``.
    Names in ``skip`` are not loaded (a spec replaces them).
    """
    skipped = set(skip)
    vset = VerifierSet(engine=engine)
    root = Path(models_dir)
    for kind in ("prm", "orm"):
        folder = root / kind
        if kind in skipped or not (folder / "config.json").is_file():
            continue
        # the folder says what it is (a generative PRM, a token classifier, ...); the name stays the served one
        vset.add(load_verifier(VerifierSpec(kind, str(folder), detect_kind(folder)), engine=engine))
        log.info("loaded verifier %s from %s", kind, folder)
    for builtin in ("math_rule", "calculator"):
        if builtin not in skipped:
            vset.add(load_verifier(VerifierSpec(builtin, builtin, builtin)))
    if "llm_judge" not in skipped:
        try:
            vset.add(load_verifier(VerifierSpec("llm_judge", "llm_judge", "llm_judge"), engine=engine))
        except VerifierLoadError as exc:
            vset.unavailable["llm_judge"] = str(exc)
            log.info("llm_judge not loaded: %s", exc)
    return vset
