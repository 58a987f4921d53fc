"""Registry of decoding strategies by name: built-ins, entry points (``ponder.strategies``) and dotted paths."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TypeVar

T = TypeVar("T")
_STRATEGIES: dict[str, type] = {}
_ALIASES = {"auto": "compute_optimal"}
BUILTIN = (
    "none",
    "best_of_n",
    "self_consistency",
    "beam_search",
    "dvts",
    "mcts",
    "tree_of_thoughts",
    "self_refine",
    "compute_optimal",
)
_loaded = False


def register(name: str) -> Callable[[type[T]], type[T]]:
    """Class decorator: make a strategy selectable per request as ``name``."""

    def add(cls: type[T]) -> type[T]:
        if name in _STRATEGIES and _STRATEGIES[name] is not cls:
            raise ValueError(f"strategy {name!r} is already registered by {_STRATEGIES[name].__qualname__}")
        cls.name = name  # type: ignore[attr-defined]
        _STRATEGIES[name] = cls
        return cls

    return add


def names() -> list[str]:
    _load()
    return sorted(_STRATEGIES)


def get(name: str) -> type:
    """The strategy class for ``name`` (or an alias); ``KeyError`` when unknown."""
    _load()
    return _STRATEGIES[_ALIASES.get(name, name)]


def load_path(path: str) -> type:
    """Import a third-party strategy from ``package.module:Class`` (it registers itself, or is registered here)."""
    module_name, _, attr = path.partition(":")
    cls = getattr(importlib.import_module(module_name), attr) if attr else None
    if cls is None:
        raise ValueError(f"strategy path {path!r} must look like 'package.module:Class'")
    name = getattr(cls, "name", None) or attr
    if _STRATEGIES.get(name) is not cls:
        register(name)(cls)
    return cls


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN:
        importlib.import_module(f"ponder.strategies.{module}")
    for ep in entry_points(group="ponder.strategies"):
        cls = ep.load()
        if _STRATEGIES.get(ep.name) is not cls:
            register(ep.name)(cls)
