"""``relay.ping``: a diagnostic round trip through a real worker."""

from __future__ import annotations

import os
import socket
from typing import Any

from celery import shared_task

from relay.tasks.base import RelayTask


@shared_task(name="relay.ping", base=RelayTask, bind=True)
def ping(self: RelayTask, message: str = "ping") -> dict[str, Any]:
    """Answer with the message, the worker's host and process, proving the broker path works."""
    return {"pong": message, "worker": socket.gethostname(), "pid": os.getpid()}


@shared_task(name="relay.canary", base=RelayTask, bind=True)
def canary(self: RelayTask, label: str = "canary") -> bool:
    """Apply a trivial effect once per idempotency key; returns False for a duplicate delivery.

    The effect is the processed key itself, so counting keys counts effects: crash drills use
    it to prove that no task is lost and none applies twice.
    """
    with self.effect() as session:
        return session is not None
