"""A message the worker had reserved when Redis crashed runs after the restart (AOF).

The worker (one process, two messages reserved) runs a slow task while a second waits behind it.
Redis is SIGKILLed and restarted with its AOF: the waiting message survives only in Redis's
``unacked`` hash, since the worker dropped it on the reconnection and the channel's close could
not restore it. The worker hands it back once it is connected again, so it runs within seconds
and nothing is left in ``unacked`` (without the hand back it would wait for the visibility
timeout, two hours).
"""

from __future__ import annotations

import json
from pathlib import Path

import redis

from relay.app_factory import create_app
from relay.config import Settings
from relay.models.base import Base
from relay.runtime import Runtime
from tests.chaos.drills import kill_group, start_worker_on, worker_env
from tests.chaos.fair_work import FAIR_WORK, starts_key
from tests.outages import OwnRedis, wait_alive_for
from tests.waiting import wait_until

PREFIX = "handback"


def test_reserved_message_runs_after_a_redis_crash(settings: Settings, tmp_path: Path) -> None:
    server = OwnRedis(tmp_path / "redis", aof=True).start()
    own = settings.model_copy(
        update={"redis": settings.redis.model_copy(update={"url": server.url})}
    )
    app = create_app(own)
    runtime: Runtime = app.extensions["relay"]
    Base.metadata.create_all(runtime.db.engine)
    env = worker_env(runtime, RELAY_CELERY_PREFETCH_MULTIPLIER="2")
    worker = start_worker_on(
        env,
        "handback@test",
        tmp_path / "worker.log",
        FAIR_WORK.queue,
        include="tests.chaos.fair_work",
    )
    direct = redis.Redis.from_url(server.url)

    def started() -> set[str]:
        return {json.loads(raw)["key"] for raw in direct.lrange(starts_key(PREFIX), 0, -1)}

    try:
        runtime.celery.send_task(FAIR_WORK.name, args=[PREFIX, 4.0, "slow"], queue=FAIR_WORK.queue)
        wait_until(lambda: "slow" in started(), timeout=60, what="the slow task's start")
        runtime.celery.send_task(
            FAIR_WORK.name, args=[PREFIX, 0.0, "waiting"], queue=FAIR_WORK.queue
        )
        # Both delivered to the worker: one runs, one waits reserved behind it.
        wait_until(lambda: direct.hlen("unacked") == 2, timeout=30, what="two unacked messages")
        assert "waiting" not in started()

        server.kill()
        direct.close()
        # Redis stays down long enough for the worker to close its channel meanwhile; the
        # worker survives that.
        assert wait_alive_for(worker, 3.0)
        server.start()
        direct = redis.Redis.from_url(server.url)
        assert direct.hlen("unacked") == 2  # the AOF kept them

        wait_until(lambda: "waiting" in started(), timeout=60, what="the reserved task's run")
        wait_until(lambda: direct.hlen("unacked") == 0, timeout=30, what="an empty unacked set")
    finally:
        kill_group(worker)
        runtime.close()
        direct.close()
        server.stop()
