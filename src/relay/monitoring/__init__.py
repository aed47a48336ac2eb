"""Health checks, worker presence, queue monitoring and metrics."""
