"""``RelayTask``: the base of every relay task.

Each run happens inside the Flask app context with the process's ``Runtime`` at hand, so task code
reaches the database, Redis and settings through ``self.runtime`` instead of module globals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery import Task

if TYPE_CHECKING:
    from relay.runtime import Runtime


class RelayTask(Task):  # type: ignore[misc]
    """Celery task that runs in relay's app context."""

    abstract = True
    acks_late = True
    reject_on_worker_lost = True

    @property
    def runtime(self) -> Runtime:
        """The process's runtime (settings, database, Redis, Celery)."""
        runtime: Runtime = self.app.relay_runtime
        return runtime

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        flask_app = self.app.flask_app
        with flask_app.app_context():
            return super().__call__(*args, **kwargs)
