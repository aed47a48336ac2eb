"""``ChainedTask``: the Celery task base that runs every execution through the middleware chain.

What happens around a task (runtime context, records, fair lease, retry policy, idempotent
effects, metrics) is not written here: each is a middleware the composition root registers on the
app's ``TaskChain`` (see ``relay.worker.middleware``). Worker deliveries and ``apply()`` run the
same chain; a plain function call of a task is refused, since it would skip all of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from celery import Task
from celery.exceptions import Ignore, Reject, Retry

from relay.catalog import TaskSpec, spec_or_default
from relay.errors import TaskError
from relay.retry import RetryPolicy
from relay.worker.effects import EffectStore, RedisEffects
from relay.worker.middleware import TaskCall, TaskChain, current_call, relay_headers

if TYPE_CHECKING:
    from redis.client import Pipeline
    from sqlalchemy.orm import Session

IDEMPOTENCY_HEADER = "idempotency_key"
TENANT_HEADER = "tenant_id"


class ChainedTask(Task):  # type: ignore[misc]
    """Celery task whose executions run through its app's ``TaskChain``."""

    abstract = True
    acks_late = True
    reject_on_worker_lost = True
    # The worker's main process counts deliveries that die with their pool process.
    Request = "relay.worker.deliveries:CountedRequest"
    # Set on a task class to override the catalogue's policy (tasks outside the catalogue).
    retry_policy: RetryPolicy | None = None

    @property
    def spec(self) -> TaskSpec:
        """This task's catalogue row (routes, limits, retry policy)."""
        return spec_or_default(self.name)

    @property
    def chain(self) -> TaskChain:
        """The middleware chain of this task's app."""
        chain = getattr(self.app, "chain", None)
        if not isinstance(chain, TaskChain):
            raise TaskError(
                f"{self.name}: its Celery app has no task chain; build the app with "
                "relay.create_runtime()"
            )
        return chain

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        if request.called_directly:
            raise TaskError(
                f"{self.name} must run through the broker (delay, apply_async) or apply(): "
                "a direct call would skip its records, retries and dead letters"
            )
        call = TaskCall(
            task=self,
            task_id=str(request.id),
            name=self.name,
            queue=(request.delivery_info or {}).get("routing_key") or self.spec.queue,
            attempt=(request.retries or 0) + 1,
            worker=request.hostname or "",
            tenant_id=self.tenant_id,
            args=list(args),
            kwargs=dict(kwargs),
            headers=relay_headers(request.headers),
            idempotency_key=self.idempotency_key,
            eager=bool(request.is_eager),
        )
        body = super().__call__
        return self.chain.run(call, lambda: body(*args, **kwargs), self._retry)

    def _retry(self, error: BaseException, delay: float) -> Any:
        request = self.request
        if request.is_eager:
            # No broker delivers an eager retry: the next attempt runs now, through the chain.
            return self.apply(
                args=request.args,
                kwargs=request.kwargs,
                task_id=request.id,
                headers=request.headers,
                retries=(request.retries or 0) + 1,
                throw=True,
            ).get()
        raise self.retry(exc=error, countdown=delay, max_retries=None)

    # --- message headers ------------------------------------------------------------------------

    def header(self, name: str) -> Any:
        """A custom header of the current message (``None`` when absent).

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

    def _effects(self) -> tuple[TaskCall, EffectStore]:
        call = current_call()
        store = call.context.get("effects") if call is not None else None
        if call is None or not isinstance(store, EffectStore):
            raise TaskError(
                f"{self.name}: effect() needs the IdempotentEffects middleware on the task chain"
            )
        return call, store

    @contextmanager
    def effect(self, scope: str | None = None) -> Iterator[Session | None]:
        """One transaction for the task's effect, applied at most once per idempotency key.

        Yields the session to write the effect in, or ``None`` when this message's key (plus
        ``scope``, for tasks that commit several independent effects, e.g. one per document) has
        been processed already: the caller must then do nothing. The key is claimed in the same
        transaction as the effect, so an effect that fails (and rolls back) leaves no key and a
        retry applies it. Without a key (``delay()``) the effect simply runs.
        """
        call, store = self._effects()
        with store.effect(self.name, store.key(call.idempotency_key, scope)) as session:
            yield session

    @contextmanager
    def redis_effect(self, scope: str | None = None) -> Iterator[Pipeline | None]:
        """A Redis effect applied at most once per idempotency key (and ``scope``).

        Yields a transactional pipeline to queue the effect's commands on (they run in one
        ``MULTI``/``EXEC`` together with the key's claim), or ``None`` when the key was claimed
        already: the caller must then do nothing. Nothing is read back inside: the commands run
        when the block ends. An exception in the block applies nothing and claims nothing.
        """
        call, store = self._effects()
        redis_store = call.context.get("redis_effects")
        if not isinstance(redis_store, RedisEffects):
            raise TaskError(f"{self.name}: redis_effect() needs a RedisEffects store on the chain")
        with redis_store.effect(self.name, store.key(call.idempotency_key, scope)) as pipe:
            yield pipe

    def already_processed(self, scope: str | None = None) -> bool:
        """Cheap read-only check before expensive work; ``effect()`` remains the real guard."""
        call, store = self._effects()
        key = store.key(call.idempotency_key, scope)
        return key is not None and store.processed(key)

    def effect_key(self, scope: str | None = None) -> str | None:
        """The processed-key of this message (and ``scope``); ``None`` without a key."""
        call, store = self._effects()
        return store.key(call.idempotency_key, scope)


def passthrough_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that hand control back to Celery (retry, ignore, reject): not task failures."""
    return (Retry, Ignore, Reject)
