"""``run_fairly``: a task body run under the scheduler (gate, lease heartbeat, charge, release).

The worker's ``FairLease`` middleware wraps every task body in it; messages the dispatcher did
not release run as they are.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from celery.exceptions import Ignore, Reject, Retry

from relay.scheduling.dispatcher import FairDispatcher, RunSlot
from relay.scheduling.tenant_queue import Outcome

T = TypeVar("T")
log = logging.getLogger(__name__)


def run_fairly(dispatcher: FairDispatcher, request: Any, call: Callable[[], T]) -> T:
    """Run a task body under the scheduler: gate, lease heartbeat, charge and release.

    Messages the scheduler did not release run as they are. A copy that is not the live one
    raises ``Ignore`` (Celery acks it and stores no state). A ``Retry`` (or a ``Reject`` that
    requeues) frees the slot; the message goes back through the fair order when it arrives.
    """
    slot = dispatcher.begin(request)
    if slot is None:
        return call()
    if not slot.run:
        raise Ignore()
    started = time.monotonic()
    try:
        result = call()
    except Retry as exc:
        _finish(slot, started, Outcome.RETRY, _seconds(exc.when))
        raise
    except Reject as exc:
        _finish(slot, started, Outcome.RETRY if exc.requeue else Outcome.FAILURE)
        raise
    except BaseException:
        _finish(slot, started, Outcome.FAILURE)
        raise
    _finish(slot, started, Outcome.SUCCESS)
    return result


def _finish(slot: RunSlot, started: float, outcome: Outcome, retry_in: float = 0.0) -> None:
    try:
        slot.finish(time.monotonic() - started, outcome, retry_in=retry_in)
    except Exception:
        # The task's own outcome stands. Its lease lapses and the next tick reclaims the slot;
        # the task may then run again, which at-least-once delivery allows anyway.
        log.exception(
            "could not report the end of a task to the scheduler",
            extra={"action": "scheduling.finish_failed", "outcome": str(outcome)},
        )


def _seconds(when: Any) -> float:
    """Celery's ``Retry.when``: a countdown in seconds or an ETA."""
    if isinstance(when, int | float):
        return float(when)
    if isinstance(when, datetime):
        moment = when if when.tzinfo else when.replace(tzinfo=UTC)
        return max((moment - datetime.now(UTC)).total_seconds(), 0.0)
    return 0.0
