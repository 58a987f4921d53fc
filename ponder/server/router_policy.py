"""The server's learned router: ``--router FILE``, else the bundled one, loaded and checked once at start-up."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ponder.strategies.compute_optimal import check_router
from ponder.strategies.router import RouterFileError, RouterPolicy, load_router

BUNDLED_ROUTER = Path(__file__).with_name("router.json")
NONE = "none"  # --router none: compute_optimal keeps its fixed thresholds


def load_server_router(path: str | Path | None = None) -> RouterPolicy | None:
    """The router in ``path`` (``None``: the bundled one; ``"none"``: no router); :class:`RouterFileError` naming
    the file when it cannot be used."""
    if path is not None and str(path) == NONE:
        return None
    return _load(str(path or BUNDLED_ROUTER))


@lru_cache(maxsize=8)
def _load(path: str) -> RouterPolicy:
    router = load_router(path)
    try:
        check_router(router)
    except ValueError as exc:
        raise RouterFileError(f"{path}: {exc}") from None
    return router
