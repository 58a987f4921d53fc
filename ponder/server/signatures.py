"""Thought signatures: an assistant turn's hidden state, sealed with AES-GCM and bound to its conversation."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import re
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ponder.core.errors import InvalidRequestError
from ponder.core.reasoning import THINK_CLOSE, THINK_OPEN
from ponder.server.settings import SignatureSettings

log = logging.getLogger("ponder.server")

VERSION = 1
_KID = 8  # bytes of key id
_NONCE = 12  # AES-GCM's standard nonce size
_HEADER = 1 + _KID
_MIN_TOKEN = _HEADER + _NONCE + 16  # the GCM tag alone is 16 bytes
_INFO = b"ponder thought signature v1"
_ALPHABET = re.compile(r"[A-Za-z0-9_-]+")  # unpadded URL-safe base64
TOP_CANDIDATES = 4  # candidates (answer, score) a signature carries


class InvalidThoughtSignature(InvalidRequestError):
    """A thought signature that cannot be trusted: tampered, truncated, expired, foreign or misplaced (400)."""

    code = "invalid_thought_signature"


@dataclass
class ThoughtState:
    """What a signature carries from one turn to the next."""

    reasoning: str | None = None  # the chosen answer's reasoning (restored into the context next turn)
    strategy: str = "none"
    effort: str | None = None
    difficulty: int | None = None  # compute_optimal's estimate, when it ran
    spent: dict[str, int] = field(default_factory=dict)  # samples, tokens
    candidates: list[dict[str, Any]] = field(default_factory=list)  # the top ones: answer, score
    truncated: bool = False  # the reasoning was cut to fit the size limit

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ThoughtState:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True)
class Turn:
    """One message of a conversation as a signature sees it; ``signature`` is checked where ``param`` says."""

    role: str
    text: str
    signature: str | None = None
    param: str = ""


def _absorb(hasher: Any, turn: Turn) -> None:
    """One turn into a running SHA-256: its role and text, each length-prefixed, so no two conversations collide."""
    for part in ("system" if turn.role == "developer" else turn.role, turn.text):
        data = part.encode("utf-8", "surrogatepass")
        hasher.update(len(data).to_bytes(8, "big") + data)


def conversation_hash(turns: Sequence[Turn]) -> str:
    """SHA-256 over the roles and texts of ``turns``: what binds a signature to the conversation before it."""
    hasher = hashlib.sha256(b"ponder conversation v1")
    for turn in turns:
        _absorb(hasher, turn)
    return hasher.hexdigest()


def derive_key(secret: str) -> tuple[bytes, bytes]:
    """The AES-256 key and the key id of an operator's secret (any string; HKDF stretches it)."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret.encode())
    return hashlib.sha256(b"kid" + key).digest()[:_KID], key


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


class SignatureCodec:
    """Seals and opens signatures: version | key id | nonce | AES-GCM(zlib(JSON)); the header is authenticated."""

    def __init__(self, settings: SignatureSettings, clock: Callable[[], float] = time.time) -> None:
        secrets = list(settings.keys)
        if not secrets:
            secrets = [os.urandom(32).hex()]
            log.warning(
                "THOUGHT SIGNATURES USE A RANDOM PER-PROCESS KEY: no --signature-key (or PONDER_SIGNATURE_KEYS) is "
                "set, so signatures issued now are refused after a restart and by every other replica. Set the same "
                "key on every replica."
            )
        keys = [derive_key(s) for s in secrets]
        self._signing_kid, self._signing = keys[0][0], AESGCM(keys[0][1])  # the first (newest) key signs
        self._keys = {kid: AESGCM(key) for kid, key in keys}  # all of them verify
        self.ttl = settings.ttl_seconds
        self.max_bytes = settings.max_bytes
        self._clock = clock

    def seal(self, conversation: str, state: ThoughtState) -> str:
        """A token for ``state`` bound to ``conversation``; reasoning is cut (and marked) to fit the size limit."""
        issued = int(self._clock())
        envelope = {"iat": issued, "exp": issued + int(self.ttl), "conv": conversation, "state": asdict(state)}
        token = self._seal(envelope)
        if len(token) <= self.max_bytes:
            return token
        state = ThoughtState(**{**asdict(state), "candidates": [], "truncated": True})
        reasoning = state.reasoning or ""
        while True:  # halve the reasoning (keeping its end, nearest the answer) until the token fits
            reasoning = reasoning[len(reasoning) // 2 :] if len(reasoning) > 1 else ""
            state.reasoning = reasoning
            envelope["state"] = asdict(state)
            token = self._seal(envelope)
            if len(token) <= self.max_bytes or not reasoning:
                return token

    def _seal(self, envelope: dict[str, Any]) -> str:
        plain = zlib.compress(json.dumps(envelope, separators=(",", ":")).encode("utf-8", "surrogatepass"))
        header = bytes([VERSION]) + self._signing_kid
        nonce = os.urandom(_NONCE)
        return _b64encode(header + nonce + self._signing.encrypt(nonce, plain, header))

    def open(self, token: str, conversation: str, param: str) -> ThoughtState:
        """The state in ``token``; any defect is an :class:`InvalidThoughtSignature` naming ``param``."""

        def refuse(why: str) -> InvalidThoughtSignature:
            return InvalidThoughtSignature(f"{param}: invalid thought signature: {why}", param=param)

        if len(token) > self.max_bytes:
            raise refuse(f"it is longer than this server's limit of {self.max_bytes} bytes")
        try:
            if not _ALPHABET.fullmatch(token):
                raise ValueError(token)
            raw = _b64decode(token)
        except (binascii.Error, ValueError):
            raise refuse("it is not a signature this server issued (malformed)") from None
        if len(raw) < _MIN_TOKEN:
            raise refuse("it is truncated")
        header, nonce, sealed = raw[:_HEADER], raw[_HEADER : _HEADER + _NONCE], raw[_HEADER + _NONCE :]
        if header[0] != VERSION:
            raise refuse(f"unknown version {header[0]}")
        key = self._keys.get(header[1:])
        if key is None:
            raise refuse("it was signed with a key this server does not hold (another server's, or a retired key)")
        try:
            envelope = json.loads(zlib.decompress(key.decrypt(nonce, sealed, header)))
        except InvalidTag:
            raise refuse("it failed authentication (tampered with or truncated)") from None
        except (zlib.error, ValueError):  # authentic but unreadable: only a bug could seal that
            raise refuse("its content is unreadable") from None
        if self._clock() > envelope.get("exp", 0):
            raise refuse("it has expired")
        if envelope.get("conv") != conversation:
            raise refuse("it belongs to another conversation (the messages before it are not those it was issued for)")
        return ThoughtState.from_dict(envelope.get("state") or {})


@dataclass
class Restored:
    """A conversation with the state its signatures carried: the prompt messages, and the last state found."""

    messages: list[dict[str, str]]
    last: ThoughtState | None = None
    conversation: str = ""  # the hash of the whole conversation: what the answer's signature binds to


class ThoughtSignatures:
    """The server's signature policy: issue a signature per answer, and check and restore the ones sent back."""

    def __init__(self, settings: SignatureSettings, clock: Callable[[], float] = time.time) -> None:
        self.codec = SignatureCodec(settings, clock)
        self.keep_reasoning = settings.reasoning == "keep"

    def sign(self, conversation: str, state: ThoughtState) -> dict[str, Any]:
        """The fields of an assistant message that carry its signature: ours, and where Gemini's API puts it."""
        token = self.codec.seal(conversation, state)
        return {"thought_signature": token, "extra_content": {"google": {"thought_signature": token}}}

    def restore(self, turns: Sequence[Turn]) -> Restored:
        """Check every signature against the conversation before it; restore the reasoning it carries (or drop it)."""
        messages: list[dict[str, str]] = []
        last = None
        hasher = hashlib.sha256(b"ponder conversation v1")  # one pass: each prefix's hash on the way
        for turn in turns:
            text = turn.text
            if turn.signature is not None:
                if turn.role != "assistant":
                    raise InvalidThoughtSignature(
                        f"{turn.param}: a thought signature belongs on an assistant message, not a {turn.role} one",
                        param=turn.param,
                    )
                last = self.codec.open(turn.signature, hasher.hexdigest(), turn.param)
                if self.keep_reasoning and last.reasoning and THINK_OPEN not in text:
                    text = f"{THINK_OPEN}{last.reasoning}{THINK_CLOSE}{text}"
            messages.append({"role": "system" if turn.role == "developer" else turn.role, "content": text})
            _absorb(hasher, turn)
        return Restored(messages, last, hasher.hexdigest())


def message_signature(message: Any) -> str | None:
    """The signature on a chat message: ``thought_signature``, else Gemini's ``extra_content.google`` (on the
    message or on one of its tool calls)."""
    if getattr(message, "thought_signature", None):
        return message.thought_signature
    calls = getattr(message, "tool_calls", None) or ()
    holders = [getattr(message, "extra_content", None)]
    holders += [c.get("extra_content") if isinstance(c, dict) else getattr(c, "extra_content", None) for c in calls]
    for holder in holders:
        google = holder.get("google") if isinstance(holder, dict) else None
        if isinstance(google, dict) and isinstance(google.get("thought_signature"), str):
            return google["thought_signature"]
    return None


def answer_state(
    plan: Any, reasoning: str | None, tokens: int, summary: dict[str, Any] | None = None, candidates: Sequence[Any] = ()
) -> ThoughtState:
    """The state of one answer: its reasoning, the plan that produced it, what was spent, the top candidates."""
    summary = summary or {}
    spent = {"samples": int(summary.get("samples", 1)), "tokens": int(summary.get("tokens", tokens))}
    ranked = sorted((c for c in candidates if c.score is not None), key=lambda c: c.score, reverse=True)
    top = [{"answer": c.answer, "score": round(float(c.score), 6)} for c in ranked[:TOP_CANDIDATES]]
    difficulty = summary.get("difficulty")
    return ThoughtState(
        reasoning=reasoning,
        strategy=plan.name,
        effort=plan.effort,
        difficulty=int(difficulty) if isinstance(difficulty, int) else None,
        spent=spent,
        candidates=top,
    )


def reuse_difficulty(plan: Any, state: ThoughtState | None) -> None:
    """A ``compute_optimal`` search starts from the difficulty the conversation's last signed turn measured,
    instead of probing again, unless the request gave one itself."""
    if state is None or state.difficulty is None or getattr(plan.strategy, "name", None) != "compute_optimal":
        return
    options = plan.strategy.options
    if getattr(options, "difficulty", 0) is None:
        plan.strategy = type(plan.strategy)(options.model_copy(update={"difficulty": state.difficulty}))


def sign_calls(calls: list[Any] | None, signed: dict[str, Any]) -> list[Any] | None:
    """Gemini's placement on an answer's tool calls too (its OpenAI API puts the signature there), in place."""
    for call in calls or ():
        if signed:
            call.extra_content = signed["extra_content"]
    return calls
