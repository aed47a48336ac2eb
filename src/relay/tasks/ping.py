"""``relay.ping``: a diagnostic round trip through a real worker."""

from __future__ import annotations

import os
import socket
from typing import Any

from relay import catalog
from relay.tasks.base import RelayTask, relay_task


@relay_task(catalog.PING)
def ping(self: RelayTask, message: str = "ping") -> dict[str, Any]:
    """Answer with the message, the worker's host and process, proving the broker path works."""
    return {"pong": message, "worker": socket.gethostname(), "pid": os.getpid()}


@relay_task(catalog.CANARY)
def canary(self: RelayTask, label: str = "canary") -> bool:
    """Apply a trivial effect once per idempotency key; returns False for a duplicate delivery.

    The effect is the processed key itself, so counting keys counts effects: crash drills use
    it to prove that no task is lost and none applies twice.
    """
    with self.effect() as session:
        return session is not None
