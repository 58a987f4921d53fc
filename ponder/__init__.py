"""Ponder: an OpenAI-compatible test-time-scaling server, and the training module that makes its verifiers."""

__version__ = "0.1.0"
