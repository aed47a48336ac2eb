"""Resilience: circuit breakers, the local spool, graceful shutdown and resource pressure, built
by the composition root."""
