"""Shared vocabulary below every other layer: types, errors, protocols, think tags, the sidecar, aggregation."""
