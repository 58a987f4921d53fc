"""The OpenAI-compatible HTTP server: wire models, routes, services, SSE, CLI."""
