"""Training module: data synthesis and trainers for the policies and verifiers Ponder serves."""
