"""``RelayTask``: the base of every relay task.

Each run happens inside the Flask app context with the process's ``Runtime`` at hand, so task code
reaches the database, Redis and settings through ``self.runtime`` instead of module globals.

Delivery is at-least-once (``acks_late``, the outbox relay may publish a row twice), so a task
applies its database effect through ``effect()``: the idempotency key the outbox sent along is
recorded in the same transaction as the effect, and a second delivery finds it and skips.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from celery import Task
from celery.exceptions import Ignore, Retry
from sqlalchemy.exc import IntegrityError

from relay.errors import TaskError
from relay.models import ProcessedKey
from relay.scheduling.hooks import run_fairly, scheduler_of
from relay.tasks.catalog import TaskSpec, spec_or_default
from relay.tasks.lifecycle import Run, relay_headers
from relay.tasks.retry import RetryPolicy, Verdict

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from relay.runtime import Runtime

log = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "idempotency_key"
TENANT_HEADER = "tenant_id"
_KEY_LENGTH = 128  # ProcessedKey.idempotency_key


class RelayTask(Task):  # type: ignore[misc]
    """Celery task that runs in relay's app context."""

    abstract = True
    acks_late = True
    reject_on_worker_lost = True
    # Set on a task class to override the catalogue's policy (tasks outside the catalogue).
    retry_policy: RetryPolicy | None = None

    @property
    def runtime(self) -> Runtime:
        """The process's runtime (settings, database, Redis, Celery)."""
        runtime: Runtime = self.app.relay_runtime
        return runtime

    @property
    def spec(self) -> TaskSpec:
        """This task's catalogue row (routes, limits, retry policy)."""
        return spec_or_default(self.name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        flask_app = self.app.flask_app
        request = self.request
        if request.called_directly or request.is_eager:
            # A plain call or apply(): no broker message, so nothing to record, retry or bury.
            with flask_app.app_context():
                return super().__call__(*args, **kwargs)
        lifecycle = self.runtime.lifecycle
        run = Run(
            task_id=request.id,
            name=self.name,
            queue=(request.delivery_info or {}).get("routing_key") or self.spec.queue,
            attempt=(request.retries or 0) + 1,
            worker=request.hostname or "",
            tenant_id=self.tenant_id,
            args=list(args),
            kwargs=dict(kwargs),
            headers=relay_headers(request.headers),
            idempotency_key=self.idempotency_key,
        )
        call = super().__call__

        def attempt() -> Any:
            # Recorded STARTED only once the scheduler let this copy run: a copy it drops (stale,
            # or a retry sent back to the fair order) never ran, and leaves the task's record to
            # the copy that does run (a STARTED left behind would look like a lost worker).
            lifecycle.started(run)
            return call(*args, **kwargs)

        try:
            with flask_app.app_context():
                # Messages the fair scheduler released run under its lease (and free their
                # slot when they end); every other message runs as it is.
                result = run_fairly(scheduler_of(self.runtime), request, attempt)
        except (Retry, Ignore):
            # The task asked for its own retry, or the scheduler dropped a superseded copy:
            # Celery handles both; this attempt just stops counting as running.
            lifecycle.abandoned(run)
            raise
        except Exception as exc:
            decision = lifecycle.failed(run, exc, self.retry_policy or self.spec.retry)
            if decision.verdict is Verdict.RETRY:
                raise self.retry(exc=exc, countdown=decision.delay, max_retries=None) from exc
            raise
        lifecycle.succeeded(run, result)
        return result

    # --- message headers ------------------------------------------------------------------------

    def header(self, name: str) -> Any:
        """A custom header of the current message (``None`` when absent or called directly).

        Celery (protocol 2) merges ``send_task(headers=...)`` into the message headers; the worker
        builds ``self.request`` from them, so a custom header is both an attribute of the request
        and an entry of ``request.headers`` (the headers Celery does not know). Both are read, the
        dict first, because an attribute could be shadowed by a future Celery field.
        """
        request = self.request
        headers = getattr(request, "headers", None)
        if isinstance(headers, dict) and headers.get(name) is not None:
            return headers[name]
        return getattr(request, name, None)

    @property
    def idempotency_key(self) -> str | None:
        """The key the outbox sent with this message; ``None`` for a plain ``delay()``."""
        value = self.header(IDEMPOTENCY_HEADER)
        return str(value) if value else None

    @property
    def tenant_id(self) -> str | None:
        """The tenant the outbox enqueued this message for (``None`` for system tasks)."""
        value = self.header(TENANT_HEADER)
        return str(value) if value else None

    def require_tenant(self, tenant_id: str) -> None:
        """Refuse arguments naming another tenant than the one the message was enqueued for.

        The outbox puts the tenant in a header as well as in the arguments; a mismatch means a
        forged or corrupted message, and a tenant-scoped task must not touch that tenant's rows.
        """
        sent_for = self.tenant_id
        if sent_for is not None and sent_for != tenant_id:
            raise TaskError(
                f"{self.name}: arguments name tenant {tenant_id} but the message is for {sent_for}"
            )

    # --- idempotent effects ---------------------------------------------------------------------

    @contextmanager
    def effect(self, scope: str | None = None) -> Iterator[Session | None]:
        """One transaction for the task's effect, applied at most once per idempotency key.

        Yields the session to write the effect in, or ``None`` when this message's key (plus
        ``scope``, for tasks that commit several independent effects, e.g. one per document) has
        been processed already: the caller must then do nothing. The key is inserted in the same
        transaction as the effect, so an effect that fails (and rolls back) leaves no key and a
        retry applies it. A concurrent duplicate blocks on the unique key until the first commits,
        then sees the conflict and skips (PostgreSQL); SQLite serialises writers outright.
        Without a key (``delay()``, direct call) the effect simply runs.
        """
        key = self.effect_key(scope)
        with self.runtime.db.transaction() as session:
            if key is not None and not self._claim(session, key):
                log.info(
                    "duplicate delivery skipped",
                    extra={"action": "task.duplicate", "task": self.name, "key": key},
                )
                yield None
                return
            yield session

    def _claim(self, session: Session, key: str) -> bool:
        """Insert ``key``; False when it is there already (or a concurrent duplicate won)."""
        if session.get(ProcessedKey, key) is not None:
            return False
        try:
            # A savepoint, so that losing the race leaves the transaction usable.
            with session.begin_nested():
                session.add(ProcessedKey(idempotency_key=key, task_name=self.name))
        except IntegrityError:
            return False
        return True

    def already_processed(self, scope: str | None = None) -> bool:
        """Cheap read-only check before expensive work; ``effect()`` remains the real guard."""
        key = self.effect_key(scope)
        if key is None:
            return False
        with self.runtime.db.session() as session:
            return session.get(ProcessedKey, key) is not None

    def effect_key(self, scope: str | None = None) -> str | None:
        """The ProcessedKey of this message (and ``scope``); ``None`` without an idempotency key."""
        key = self.idempotency_key
        if key is None:
            return None
        if scope is not None:
            key = f"{key}:{scope}"
        if len(key) > _KEY_LENGTH:
            key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
        return key
