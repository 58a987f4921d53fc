"""Engines: one narrow interface (``Engine``) over vLLM, transformers, an upstream server, or a fake."""
