"""``ponder bench``: benchmarks that drive the server through its app factory and HTTP API, side by side."""
