"""The OpenAI-compatible HTTP server: wire models, routes, serving classes, SSE, settings, errors, metrics."""
