"""Adapters to the outside world (database, Redis, Celery, logging, metrics), initialised in a fixed
order by ``relay.app_factory.create_app``."""
