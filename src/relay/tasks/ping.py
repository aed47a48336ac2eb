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
