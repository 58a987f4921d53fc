"""Verifiers: outcome and process reward models, rules and judges that score answers."""
