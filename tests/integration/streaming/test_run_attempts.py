"""Attempts of one run (time slices): one stream across slices, and stops scoped to an attempt.

The run task's runner is driven directly (real Redis and database, no broker round trip), with a
time-slice layer that yields after every top-level node, as the fair scheduler would.
"""

from __future__ import annotations

from typing import Any

from relay.runtime import Runtime
from relay.services.app_service import AppService
from relay.services.run_streams import RunJob
from relay.services.tenant_service import TenantService
from relay.services.workflow_run_service import WorkflowRunService
from relay.streaming import START, parse_queue_event
from relay.streaming.run_control import _key
from relay.tasks.workflow_run import WorkflowRunner
from relay.workflow import FixedTimeSlice, TimeSliceLayer
from tests.integration.streaming.support import workflow_graph


def _start(runtime: Runtime) -> tuple[str, RunJob]:
    tenant = TenantService(runtime).create("slices")
    apps = AppService(runtime)
    app = apps.create(tenant.id, name="sliced", mode="workflow")
    apps.sync_draft_workflow(tenant.id, app.id, workflow_graph(llm_nodes=2))
    apps.publish_workflow(tenant.id, app.id)
    started = WorkflowRunService(runtime).start(
        tenant.id, app.id, user="alice", inputs={"topic": "slices"}
    )
    job = RunJob(tenant_id=tenant.id, app_id=app.id, user_id=started.user_id)
    return started.run_id, job


def _events(runtime: Runtime, run_id: str) -> list[tuple[str, bool, dict[str, Any]]]:
    entries = runtime.streams.channel.read(run_id, START, count=10_000)
    return [(e.event, e.final, parse_queue_event(e.data).model_dump()) for e in entries]


def test_a_sliced_run_streams_once_across_attempts_and_an_old_stop_flag_is_ignored(
    runtime: Runtime,
) -> None:
    runtime.settings = runtime.settings.model_copy(
        update={"workflow": runtime.settings.workflow.model_copy(update={"llm_token_delay": 0})}
    )
    run_id, job = _start(runtime)
    slicer = TimeSliceLayer(FixedTimeSlice(0))  # yield at every node boundary

    assert WorkflowRunner(runtime, run_id, job, [slicer]).execute() == "paused"
    first = _events(runtime, run_id)
    assert [name for name, _, _ in first] == ["workflow_started", "node_started", "node_succeeded"]
    assert not any(final for _, final, _ in first)

    # A stop flag left over for attempt 1 (which has ended) does not abort attempt 2.
    runtime.redis.set(_key(run_id, "stop"), "1")
    outcomes = []
    while not outcomes or outcomes[-1] == "paused":
        outcomes.append(WorkflowRunner(runtime, run_id, job, [slicer]).execute())
    assert outcomes == ["paused", "paused", "finished"]

    events = _events(runtime, run_id)
    names = [name for name, _, _ in events]
    assert names.count("workflow_started") == 1
    assert names[-1] == "workflow_succeeded"
    assert [final for _, final, _ in events].count(True) == 1
    assert [e["node_id"] for name, _, e in events if name == "node_succeeded"] == [
        "start", "llm1", "llm2", "end",
    ]  # fmt: skip
    detail = WorkflowRunService(runtime).detail(job.tenant_id, run_id, "alice")
    assert detail.status == "succeeded"
    assert detail.total_steps == 4
    # A further delivery of the message finds the run finished and does nothing.
    assert WorkflowRunner(runtime, run_id, job).execute() == "already_finished"


def test_a_stop_for_the_waiting_run_aborts_its_next_attempt(runtime: Runtime) -> None:
    run_id, job = _start(runtime)
    slicer = TimeSliceLayer(FixedTimeSlice(0))
    assert WorkflowRunner(runtime, run_id, job, [slicer]).execute() == "paused"
    stopped = WorkflowRunService(runtime).stop(job.tenant_id, run_id, "alice")
    assert stopped.stopping
    assert WorkflowRunner(runtime, run_id, job, [slicer]).execute() == "finished"
    events = _events(runtime, run_id)
    assert events[-1][:2] == ("stop", True)
    assert WorkflowRunService(runtime).detail(job.tenant_id, run_id, "alice").status == "stopped"


def test_a_run_whose_record_is_gone_ends_with_an_error_event(runtime: Runtime) -> None:
    from relay.models import WorkflowRun

    run_id, job = _start(runtime)
    with runtime.db.transaction() as session:
        row = session.get(WorkflowRun, run_id)
        session.delete(row)
    assert WorkflowRunner(runtime, run_id, job).execute() == "missing"
    assert _events(runtime, run_id) == [
        (
            "error",
            True,
            {"event": "error", "code": "run_not_found", "message": "the run record is gone"},
        )
    ]
