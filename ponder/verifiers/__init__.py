"""Verifiers: score whole answers (outcome) or single reasoning steps (process); higher is better."""
