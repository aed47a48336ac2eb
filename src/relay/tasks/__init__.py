"""Celery tasks: the catalogue, the ``RelayTask`` base and one module per domain."""
