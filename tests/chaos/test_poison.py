"""R4: a task that kills its worker is dead-lettered after its attempts; a replay runs it its
attempts again and buries it again: no loop, and the worker keeps serving other tasks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from relay.models import DeadLetter
from relay.runtime import Runtime
from tests.outages import stop_process
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]


def _letters(runtime: Runtime) -> list[DeadLetter]:
    runtime.lifecycle.flush()
    with runtime.db.session() as session:
        query = select(DeadLetter).where(DeadLetter.task_name == "tests.chaos.poison")
        return list(session.scalars(query))


@pytest.mark.chaos
@pytest.mark.timeout(400)
def test_r4_poison_task_reaches_dead_letters_and_a_replay_does_not_loop(
    runtime: Runtime, tmp_path: Path
) -> None:
    settings = runtime.settings
    env = dict(
        os.environ,
        RELAY_DATABASE_URL=settings.database_url,
        RELAY_REDIS_URL=str(settings.redis.url),
        RELAY_VAR_DIR=str(settings.var_dir),
        RELAY_LOG_LEVEL="WARNING",
        PYTHONPATH=str(REPO),
    )
    argv = [sys.executable, "-m", "relay", "worker", "-Q", "monitor", "-c", "1", "-n", "r4@drill",
            "--include", "tests.chaos.poison"]  # fmt: skip
    journal = tmp_path / "runs.txt"
    journal.touch()
    with (tmp_path / "worker.log").open("ab") as out:
        worker = subprocess.Popen(
            argv, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    started = time.monotonic()
    try:
        runtime.celery.send_task("tests.chaos.poison", args=[str(journal)], queue="monitor")
        (letter,) = wait_until(lambda: _letters(runtime), timeout=150, what="the dead letter")
        buried_after = time.monotonic() - started
        assert letter.reason == "worker_lost"
        assert journal.read_text().count("run") == 3  # its three attempts, not one more

        runtime.lifecycle.dead_letters.replay(letter.id)
        wait_until(lambda: len(_letters(runtime)) == 2, timeout=150, what="the replay's letter")
        assert journal.read_text().count("run") == 6

        # The worker survived its children's deaths and still serves.
        ping = runtime.celery.send_task("relay.ping", args=["after"], queue="monitor")
        assert ping.get(timeout=30)["pong"] == "after"
        assert journal.read_text().count("run") == 6
        print(
            f"\nR4 | tasks 1 (+1 replay) | runs 6 | lost 0 | duplicated 0 | "
            f"dead letter after {buried_after:.1f}s | loop: none"
        )
    finally:
        stop_process(worker)
