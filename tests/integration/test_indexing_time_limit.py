"""Soft time limit: the indexing task marks its documents before it gives up.

Time limits need the prefork pool (they are signals to the pool's child process), so this test
runs ``relay worker`` as a subprocess. The message carries a soft limit far below what indexing
four 1 MiB documents takes: the limit strikes mid-batch, the document being worked on ends in
``error`` ("ran out of time"), those not reached yet too, and the task is dead-lettered.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import select

from relay.models import Dataset, DeadLetter, Document, Tenant
from relay.runtime import Runtime
from relay.tasks.indexing import NOT_REACHED, OUT_OF_TIME, ran_out_of_time
from tests.waiting import wait_until

INDEX = "relay.dataset.index_documents"
SOFT_LIMIT = 1.0  # seconds; indexing the batch takes several


def _big_markdown(seed: int) -> str:
    paragraph = (
        "## Section {n}\n\nSome **bold** words about queue {n} and a [link](http://x.y/{n}) "
        "with `code` in a sentence on indexing documents. " * 3 + "\n\n- item one\n- item two\n\n"
    )
    text = "".join(paragraph.format(n=seed * 10_000 + i) for i in range(4000))
    return text[: 1024 * 1024]


def _worker(runtime: Runtime, log: Path) -> subprocess.Popen[bytes]:
    settings = runtime.settings
    env = dict(
        os.environ,
        RELAY_DATABASE_URL=settings.database_url,
        RELAY_REDIS_URL=str(settings.redis.url),
        RELAY_VAR_DIR=str(settings.var_dir),
        RELAY_LOG_LEVEL="WARNING",
    )
    argv = [sys.executable, "-m", "relay", "worker", "-Q", "dataset", "-c", "1", "-n", "tl@h"]
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def test_a_task_out_of_time_marks_its_documents_as_error(runtime: Runtime, tmp_path: Path) -> None:
    with runtime.db.transaction() as session:
        tenant = Tenant(name="acme")
        session.add(tenant)
        session.flush()
        dataset = Dataset(tenant_id=tenant.id, name="kb")
        session.add(dataset)
        session.flush()
        documents = [
            Document(
                tenant_id=tenant.id,
                dataset_id=dataset.id,
                name=f"big{i}.md",
                content=_big_markdown(i),
                indexing_status="waiting",
            )
            for i in range(4)
        ]
        session.add_all(documents)
        session.flush()
        tenant_id, dataset_id = tenant.id, dataset.id
        ids = [document.id for document in documents]

    runtime.celery.send_task(
        INDEX,
        args=[tenant_id, dataset_id, ids],
        headers={"idempotency_key": "time-limit", "tenant_id": tenant_id},
        queue="dataset",
        soft_time_limit=SOFT_LIMIT,
        time_limit=60,
    )
    worker = _worker(runtime, tmp_path / "worker.log")
    try:

        def statuses() -> list[tuple[str, str | None]] | None:
            with runtime.db.session() as session:
                rows = session.execute(
                    select(Document.id, Document.indexing_status, Document.error).where(
                        Document.id.in_(ids)
                    )
                )
                found = {row.id: (row.indexing_status, row.error) for row in rows}
            ordered = [found[i] for i in ids]
            done = all(status in {"completed", "error"} for status, _ in ordered)
            return ordered if done else None

        final = wait_until(statuses, timeout=60, what="every document to be final")
        dead = wait_until(lambda: _dead_letter(runtime), timeout=30, what="the dead letter")
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()

    errors = [error for status, error in final if status == "error"]
    assert errors, f"the limit never struck: {final}"
    # Completed ones first, then the document the limit caught, then those never reached.
    completed = len(final) - len(errors)
    assert all(status == "completed" for status, _ in final[:completed])
    assert errors[0] == OUT_OF_TIME, final
    assert all(error == NOT_REACHED for error in errors[1:])
    assert dead.reason == "time_limit"
    assert dead.task_name == INDEX


def _dead_letter(runtime: Runtime) -> DeadLetter | None:
    runtime.lifecycle.flush()
    with runtime.db.session() as session:
        return session.scalar(select(DeadLetter).where(DeadLetter.task_name == INDEX))


def test_an_error_raised_while_out_of_time_counts_as_out_of_time() -> None:
    def interrupted_rollback() -> None:
        try:
            raise SoftTimeLimitExceeded()
        except SoftTimeLimitExceeded:
            raise OSError("cannot exit pipeline mode while busy") from None

    with pytest.raises(OSError, match="pipeline") as caught:
        interrupted_rollback()
    assert caught.value.__context__ is not None  # ``from None`` hides it but keeps it
    assert ran_out_of_time(caught.value)
    assert ran_out_of_time(SoftTimeLimitExceeded())
    assert not ran_out_of_time(ValueError("plain"))
