"""Small standard middlewares: a context around every execution, the fair lease, the sent stamp."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from relay.monitoring.queues import SENT_AT_HEADER
from relay.scheduling.dispatcher import FairDispatcher
from relay.scheduling.gate import run_fairly
from relay.worker.middleware import OutgoingMessage, Proceed, TaskCall, TaskMiddleware


class Scoped(TaskMiddleware):
    """Runs every execution inside ``enter(call)`` (the runtime's context, an app context...)."""

    def __init__(self, enter: Callable[[TaskCall], AbstractContextManager[Any]]) -> None:
        self.enter = enter

    def around(self, call: TaskCall, proceed: Proceed) -> Any:
        with self.enter(call):
            return proceed()


class FairLease(TaskMiddleware):
    """Messages the fair dispatcher released run under their lease and free their slot when done;
    every other message runs as it is."""

    def __init__(self, dispatcher: FairDispatcher) -> None:
        self.dispatcher = dispatcher

    def around(self, call: TaskCall, proceed: Proceed) -> Any:
        return run_fairly(self.dispatcher, call.request, proceed)


class SentAt(TaskMiddleware):
    """Stamps every outgoing message with its publish time, so queue monitoring can tell its age."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock

    def before_publish(self, message: OutgoingMessage) -> None:
        # Overwrites an inherited value: a retry re-publishes with the request's headers, and
        # its wait in the queue starts now.
        message.headers[SENT_AT_HEADER] = self.clock()
