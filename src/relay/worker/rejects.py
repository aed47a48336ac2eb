"""Messages a worker cannot run become dead letters, never silent losses.

Three ways a message used to vanish or wedge:

- its task name is unknown to the worker (an old client, a typo, a module not loaded): Celery
  logs, rejects the message without requeue and fires ``task_unknown``;
- it is no task message at all (no ``task`` header, a foreign producer): ``task_rejected``;
- its arguments do not fit the task's signature (a Celery client that sent one argument too
  many): the body raises ``TypeError`` at binding, a retry policy retries it, and the retry's own
  publish fails the same argument check, leaving the record at RETRY.

``install_reject_hooks`` buries the first two from the worker's main process (reason
``rejected``, with what could be decoded of the message); ``ArgumentCheck`` binds the arguments
before the body runs and raises ``BadArguments``, which is dead-lettered at once (``rejected``).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from celery import signals

from relay.models import TaskStatus, utcnow
from relay.retry import FatalTaskError
from relay.worker.lifecycle import TaskLifecycle
from relay.worker.middleware import Proceed, TaskCall, TaskMiddleware, relay_headers

log = logging.getLogger(__name__)

REJECTED = "rejected"


class BadArguments(FatalTaskError):
    """The message's arguments do not fit the task's signature."""

    code = "bad_arguments"
    dead_reason = REJECTED


class ArgumentCheck(TaskMiddleware):
    """Binds the arguments to the task's signature before anything runs."""

    def around(self, call: TaskCall, proceed: Proceed) -> Any:
        check = getattr(call.task, "__header__", None)
        if check is not None:
            try:
                check(*call.args, **call.kwargs)
            except TypeError as exc:
                raise BadArguments(f"{call.name}: the arguments do not fit: {exc}") from exc
        return proceed()


def _decoded(message: Any) -> tuple[list[Any], dict[str, Any], str]:
    """Arguments of a protocol-2 message body, and a note when they could not be read."""
    try:
        body = message.decode()
    except Exception as exc:
        return [], {}, f"; body not decodable ({type(exc).__name__})"
    if isinstance(body, (list, tuple)) and len(body) >= 2:
        args, kwargs = body[0], body[1]
        if isinstance(args, (list, tuple)) and isinstance(kwargs, dict):
            return list(args), dict(kwargs), ""
    return [], {}, "; body is not a task body"


def bury_message(
    lifecycle: TaskLifecycle,
    message: Any,
    *,
    task_id: str | None,
    name: str | None,
    error: str,
) -> None:
    """Store ``message`` as a dead letter (reason ``rejected``) and its record as DEAD."""
    headers = message.headers if isinstance(getattr(message, "headers", None), dict) else {}
    args, kwargs, note = _decoded(message)
    task_id = task_id or str(headers.get("id") or uuid.uuid4())
    name = name or str(headers.get("task") or "(not a task message)")
    queue = str((getattr(message, "delivery_info", None) or {}).get("routing_key") or "")
    attempts = int(headers.get("retries") or 0) + 1
    tenant = headers.get("tenant_id")
    lifecycle.dead_letters.bury(
        task_id=task_id,
        task_name=name,
        queue=queue,
        tenant_id=str(tenant) if tenant else None,
        args=args,
        kwargs=kwargs,
        headers=relay_headers(headers),
        reason=REJECTED,
        error=error + note,
        traceback=None,
        attempts=attempts,
    )
    lifecycle.records.record(
        task_id,
        name=name,
        queue=queue,
        attempts=attempts,
        status=TaskStatus.DEAD,
        error=error + note,
        finished_at=utcnow(),
    )
    log.error(
        "a message the worker cannot run is a dead letter now",
        extra={"action": "task.rejected", "task_id": task_id, "task": name, "queue": queue},
    )


def install_reject_hooks(celery: Any, lifecycle: TaskLifecycle) -> None:
    """Bury unknown and rejected messages of the app ``celery`` (idempotent per app)."""

    def mine(sender: Any) -> bool:
        return getattr(sender, "app", celery) is celery

    def on_unknown(
        sender: Any = None,
        message: Any = None,
        exc: Any = None,
        name: str | None = None,
        id: str | None = None,
        **_: Any,
    ) -> None:
        if message is None or not mine(sender):
            return
        bury_message(lifecycle, message, task_id=id, name=name, error=f"unknown task {name!r}")

    def on_rejected(sender: Any = None, message: Any = None, exc: Any = None, **_: Any) -> None:
        if message is None or not mine(sender):
            return
        reason = f"{type(exc).__name__}: {exc}" if exc is not None else "not a task message"
        bury_message(lifecycle, message, task_id=None, name=None, error=reason)

    uid = f"relay-{id(celery)}"
    signals.task_unknown.connect(on_unknown, weak=False, dispatch_uid=uid + "-unknown")
    signals.task_rejected.connect(on_rejected, weak=False, dispatch_uid=uid + "-rejected")
