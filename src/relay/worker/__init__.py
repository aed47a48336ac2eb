"""The worker runtime: the task base and its middleware chain, task records, dead letters."""
