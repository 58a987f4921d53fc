"""Registry of decoding strategies by name; the server validates ``strategy`` against it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
_STRATEGIES: dict[str, type] = {}


def register(name: str) -> Callable[[type[T]], type[T]]:
    """Class decorator: make a strategy selectable per request as ``name``."""

    def add(cls: type[T]) -> type[T]:
        if name in _STRATEGIES and _STRATEGIES[name] is not cls:
            raise ValueError(f"strategy {name!r} is already registered by {_STRATEGIES[name].__qualname__}")
        _STRATEGIES[name] = cls
        return cls

    return add


def names() -> list[str]:
    _load_builtin()
    return sorted(_STRATEGIES)


def get(name: str) -> type:
    _load_builtin()
    return _STRATEGIES[name]


def _load_builtin() -> None:
    from strategies import none  # noqa: F401  (registers itself)
