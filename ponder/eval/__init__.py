"""``ponder eval``: accuracy against tokens spent on held-out arithmetic, through the public API."""

from ponder.eval.report import summarize
from ponder.eval.specs import RunSpec, SpecError, build_runs, parse_run, parse_sweep

__all__ = ["RunSpec", "SpecError", "build_runs", "parse_run", "parse_sweep", "summarize"]
