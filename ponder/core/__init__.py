"""Shared vocabulary of Ponder: types, errors and the think-tag parser."""
