"""Decoding strategies: one module per strategy, selected per request."""
