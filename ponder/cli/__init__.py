"""The ``ponder`` command line; the top layer, above the server, training, eval and bench."""
