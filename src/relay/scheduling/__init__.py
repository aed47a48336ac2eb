"""Tenant isolation and fair scheduling.

Producers call ``FairDispatcher.submit`` instead of ``send_task``; tasks run under
``run_fairly``; beat calls ``FairDispatcher.tick``. See ``dispatcher`` for the flow and
``tenant_queue`` for the guarantees (no double release, no lost item, never more than N slots
per tenant and task type).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from relay.scheduling.admission import (
        Admission,
        AdmissionDecision,
        InMemoryAdmission,
        Limit,
        RedisAdmission,
    )
    from relay.scheduling.dispatcher import (
        FairDispatcher,
        FairTicket,
        RunSlot,
        TickReport,
        ticket_of,
    )
    from relay.scheduling.fairshare import FairShare, jain_index, shares
    from relay.scheduling.fairshare_redis import RedisFairShare
    from relay.scheduling.gate import run_fairly
    from relay.scheduling.metrics import SchedulingCollector, register_metrics
    from relay.scheduling.settings import SchedulingSettings
    from relay.scheduling.tenant_queue import (
        NewItem,
        Outcome,
        RedisTenantQueue,
        Release,
        StartStatus,
        TenantQueue,
        TenantState,
    )
    from relay.scheduling.tenant_queue_memory import InMemoryTenantQueue
    from relay.scheduling.timeslice import (
        NeverYield,
        SliceController,
        TenantSliceController,
        TimeSlicePolicy,
        requeue_continuation,
    )


_EXPORTS: dict[str, str] = {
    "Admission": "relay.scheduling.admission",
    "AdmissionDecision": "relay.scheduling.admission",
    "InMemoryAdmission": "relay.scheduling.admission",
    "Limit": "relay.scheduling.admission",
    "RedisAdmission": "relay.scheduling.admission",
    "FairDispatcher": "relay.scheduling.dispatcher",
    "FairTicket": "relay.scheduling.dispatcher",
    "RunSlot": "relay.scheduling.dispatcher",
    "TickReport": "relay.scheduling.dispatcher",
    "ticket_of": "relay.scheduling.dispatcher",
    "FairShare": "relay.scheduling.fairshare",
    "jain_index": "relay.scheduling.fairshare",
    "shares": "relay.scheduling.fairshare",
    "RedisFairShare": "relay.scheduling.fairshare_redis",
    "run_fairly": "relay.scheduling.gate",
    "SchedulingCollector": "relay.scheduling.metrics",
    "register_metrics": "relay.scheduling.metrics",
    "SchedulingSettings": "relay.scheduling.settings",
    "NewItem": "relay.scheduling.tenant_queue",
    "Outcome": "relay.scheduling.tenant_queue",
    "RedisTenantQueue": "relay.scheduling.tenant_queue",
    "Release": "relay.scheduling.tenant_queue",
    "StartStatus": "relay.scheduling.tenant_queue",
    "TenantQueue": "relay.scheduling.tenant_queue",
    "TenantState": "relay.scheduling.tenant_queue",
    "InMemoryTenantQueue": "relay.scheduling.tenant_queue_memory",
    "NeverYield": "relay.scheduling.timeslice",
    "SliceController": "relay.scheduling.timeslice",
    "TenantSliceController": "relay.scheduling.timeslice",
    "TimeSlicePolicy": "relay.scheduling.timeslice",
    "requeue_continuation": "relay.scheduling.timeslice",
}

__all__ = [
    # settings
    "SchedulingSettings",
    # producers and the task runtime
    "FairDispatcher",
    "FairTicket",
    "RunSlot",
    "TickReport",
    "ticket_of",
    "run_fairly",
    # state machine
    "TenantQueue",
    "RedisTenantQueue",
    "InMemoryTenantQueue",
    "NewItem",
    "Release",
    "Outcome",
    "StartStatus",
    "TenantState",
    # fair share
    "FairShare",
    "RedisFairShare",
    "jain_index",
    "shares",
    # time slices
    "SliceController",
    "TimeSlicePolicy",
    "TenantSliceController",
    "NeverYield",
    "requeue_continuation",
    # admission
    "Admission",
    "AdmissionDecision",
    "Limit",
    "RedisAdmission",
    "InMemoryAdmission",
    # visibility
    "SchedulingCollector",
    "register_metrics",
]


def __getattr__(name: str) -> Any:
    # Lazy: ``relay.config`` imports ``relay.scheduling.settings``, which must not drag in
    # Celery, Redis and the dispatcher (nor import ``relay.config`` back) on the way.
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'relay.scheduling' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
