"""``relay queues check`` fails while a routed queue has no consumer and passes once it has one."""

from __future__ import annotations

import pytest

from relay import catalog
from relay.errors import QueueCheckError
from relay.runtime import Runtime
from relay.services.queue_service import check_consumers, require_consumers
from tests.conftest import run_worker


def test_check_names_queues_without_consumer(runtime: Runtime) -> None:
    routed = catalog.routed_queues()
    others = [q for q in catalog.queue_names() if q not in routed]
    with run_worker(runtime, queues=others):
        result = check_consumers(runtime, timeout=0.5, attempts=2)
        assert result.missing == routed
        with pytest.raises(QueueCheckError) as excinfo:
            require_consumers(runtime, timeout=0.5, attempts=2)
        for queue in routed:
            assert queue in excinfo.value.message


def test_check_passes_when_every_routed_queue_is_consumed(runtime: Runtime) -> None:
    with run_worker(runtime, queues=catalog.routed_queues()) as worker:
        result = require_consumers(runtime, timeout=2)
        assert result.missing == []
        assert all(worker.hostname in hosts for hosts in result.consumers.values())
