"""Workflow runs for API callers: start one in a worker, stream its events, stop it, read it.

Starting a run: the checks read the app (no write lock), admission and the run's owner are Redis
calls made before any write transaction, and the transaction itself is database work only: the
run record (status ``running``) and the outbox row of the ``relay.workflow.run`` task on the
tenant's plan queue commit together; the row is published after the commit. A transaction that
fails refunds the admission. The caller then reads the run's stream from its first entry, so no
event can slip past between enqueueing and subscribing. Every read, stream and stop
is scoped by tenant *and* end user: anyone else gets 404, as for a run that does not exist.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.orm import Session

from relay.catalog import WORKFLOW_QUEUE_BY_PLAN
from relay.config import Plan
from relay.errors import BadRequest, Conflict, NotFound
from relay.models import (
    App,
    AppMode,
    CreatorRole,
    Tenant,
    WorkflowNodeExecution,
    WorkflowRun,
    WorkflowRunStatus,
    WorkflowRunTriggeredFrom,
    new_id,
)
from relay.runtime import Runtime
from relay.services.app_service import require_app
from relay.services.run_streams import RUN_TASK, RunJob, end_user_id
from relay.services.workflow_check import InvalidWorkflow as InvalidWorkflow  # re-exported
from relay.services.workflow_check import check_graph, check_run_inputs
from relay.streaming import (
    START,
    AppQueueEvent,
    AppQueueManager,
    InvokeFrom,
    StopEvent,
    StreamItem,
)
from relay.streaming.channels import parse_id
from relay.streaming.queue_events import (
    WorkflowFailedEvent,
    WorkflowPartialSucceededEvent,
    WorkflowSucceededEvent,
)
from relay.workflow.model_config import graph_from_model_config

PUBLISHED = "published"
# Apps whose graph is built from their model config at each run (no published workflow).
MODEL_CONFIG_MODES = frozenset({AppMode.COMPLETION, AppMode.CHAT})


class WrongAppMode(BadRequest):
    """The endpoint does not run apps of this mode."""

    code = "app_mode_not_supported"


class WorkflowNotPublished(Conflict):
    """The app has no published workflow to run."""

    code = "workflow_not_published"


class NodeExecutionView(BaseModel):
    """One node execution of a run."""

    model_config = ConfigDict(frozen=True)

    id: str
    index: int
    node_execution_id: str | None
    node_id: str
    node_type: str
    title: str
    status: str
    inputs: dict[str, Any] | None
    process_data: dict[str, Any] | None
    outputs: dict[str, Any] | None
    error: str | None
    elapsed_time: float
    execution_metadata: dict[str, Any] | None
    created_at: datetime
    finished_at: datetime | None


class RunResult(BaseModel):
    """A run's outcome: status, outputs, timings and token usage."""

    model_config = ConfigDict(frozen=True)

    id: str
    app_id: str
    status: str
    inputs: dict[str, Any]
    outputs: dict[str, Any] | None
    error: str | None
    elapsed_time: float
    total_tokens: int
    total_steps: int
    exceptions_count: int
    created_at: datetime
    finished_at: datetime | None


class RunDetail(RunResult):
    """A run with its node executions (in execution order)."""

    node_executions: list[NodeExecutionView]


class OperatorRunDetail(RunDetail):
    """A run as an operator sees it: its graph and end user too."""

    created_by: str
    graph: dict[str, Any]


class StopResult(BaseModel):
    """The answer to a stop request: ``stopping`` is False when the run had ended already."""

    model_config = ConfigDict(frozen=True)

    result: str = "success"
    stopping: bool
    status: str


@dataclass(frozen=True)
class PreparedRun:
    """A run that passed its checks (app mode, published and valid graph) and its plan."""

    tenant_id: str
    app_id: str
    mode: str
    plan: Plan
    graph: dict[str, Any]


@dataclass(frozen=True)
class AdmittedRun:
    """A prepared run that admission let in, with its id and owner (recorded in Redis)."""

    prepared: PreparedRun
    run_id: str
    owner: str


class StartedRun(BaseModel):
    """A run that was created and enqueued."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    user_id: str
    conversation_id: str | None = None
    message_id: str | None = None


def enqueue_run(
    runtime: Runtime, session: Session, *, run_id: str, tenant_id: str, plan: Plan, job: RunJob
) -> None:
    """Hand a run to the workers: the one place to switch to the fair scheduler.

    Today an outbox row on the plan's workflow queue (committed with the run record, published
    after commit); the lead replaces the body with ``FairDispatcher.submit(...)``.
    """
    runtime.outbox.enqueue(
        session,
        RUN_TASK,
        args=[run_id, job.model_dump(mode="json")],
        tenant_id=tenant_id,
        queue=WORKFLOW_QUEUE_BY_PLAN[plan],
    )


def _result_fields(row: WorkflowRun) -> dict[str, Any]:
    return {
        "id": row.id,
        "app_id": row.app_id,
        "status": row.status,
        "inputs": row.inputs,
        "outputs": row.outputs,
        "error": row.error,
        "elapsed_time": row.elapsed_time,
        "total_tokens": row.total_tokens,
        "total_steps": row.total_steps,
        "exceptions_count": row.exceptions_count,
        "created_at": row.created_at,
        "finished_at": row.finished_at,
    }


def _node_view(row: WorkflowNodeExecution) -> NodeExecutionView:
    return NodeExecutionView(
        id=row.id,
        index=row.index,
        node_execution_id=row.node_execution_id,
        node_id=row.node_id,
        node_type=row.node_type,
        title=row.title,
        status=row.status,
        inputs=row.inputs,
        process_data=row.process_data,
        outputs=row.outputs,
        error=row.error,
        elapsed_time=row.elapsed_time,
        execution_metadata=row.execution_metadata,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


def check_workflow(graph: Mapping[str, Any]) -> None:
    """Raise :class:`InvalidWorkflow` when the graph cannot run."""
    check_graph(graph, what="the published workflow")


def _terminal_of(row: WorkflowRun) -> AppQueueEvent:
    """The terminal event a finished run's stream had, rebuilt from its record."""
    outputs = dict(row.outputs or {})
    if row.status == WorkflowRunStatus.SUCCEEDED:
        return WorkflowSucceededEvent(outputs=outputs)
    if row.status == WorkflowRunStatus.PARTIAL_SUCCEEDED:
        return WorkflowPartialSucceededEvent(exceptions_count=row.exceptions_count, outputs=outputs)
    if row.status == WorkflowRunStatus.STOPPED:
        return StopEvent(reason=row.error, outputs=outputs)
    return WorkflowFailedEvent(error=row.error or "failed", exceptions_count=row.exceptions_count)


class WorkflowRunService:
    """Starts, streams, stops and reads a tenant's workflow runs."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.streams = runtime.streams

    # --- starting -------------------------------------------------------------------------------

    def start(
        self, tenant_id: str, app_id: str, *, user: str, inputs: Mapping[str, Any]
    ) -> StartedRun:
        """Create and enqueue a run of a workflow app's published workflow."""
        with self.runtime.db.session() as session:
            app = require_app(session, tenant_id, app_id)
            if app.mode != AppMode.WORKFLOW:
                raise WrongAppMode(
                    f"a {app.mode} app does not run here; "
                    + {
                        AppMode.ADVANCED_CHAT: "use /v1/chat-messages",
                        AppMode.CHAT: "use /v1/chat-messages",
                        AppMode.COMPLETION: "use /v1/completion-messages",
                    }.get(AppMode(app.mode), ""),
                    details={"mode": app.mode},
                )
            prepared = self.prepare_run(session, app, inputs)
        with self.admitted(prepared, user) as slot, self.runtime.db.transaction() as session:
            return self.create_run(session, slot, inputs=inputs)

    def prepare_run(
        self, session: Session, app: App, inputs: Mapping[str, Any] | None = None
    ) -> PreparedRun:
        """Check that ``app`` can run now (published, valid graph, valid ``inputs`` when given);
        reads only."""
        if app.mode in MODEL_CONFIG_MODES:
            # Completion and basic chat apps run the graph their model config describes.
            graph = graph_from_model_config(app.mode, app.model_config or {})
        elif app.published_workflow is None:
            raise WorkflowNotPublished("the app has no published workflow; publish it first")
        else:
            graph = copy.deepcopy(app.published_workflow)
        check_workflow(graph)
        if inputs is not None:
            # Missing or invalid inputs are the caller's mistake: 400 naming the variable, no run.
            check_run_inputs(graph, inputs)
        plan = session.scalar(select(Tenant.plan).where(Tenant.id == app.tenant_id))
        if plan is None:
            raise NotFound("tenant not found")
        return PreparedRun(
            tenant_id=app.tenant_id, app_id=app.id, mode=app.mode, plan=Plan(plan), graph=graph
        )

    @contextmanager
    def admitted(self, prepared: PreparedRun, user: str) -> Iterator[AdmittedRun]:
        """Admission and the run's owner, before the run's transaction (both are Redis calls).

        Refused: 429 with Retry-After, nothing created. When the block raises (the transaction
        that creates the run failed or rolled back), the token and the day's run are refunded:
        admission counts runs that exist, not attempts. The owner key of a run that was never
        created simply expires.
        """
        admission = self.runtime.admission
        admission.check_workflow_run(prepared.tenant_id, prepared.plan).enforce()
        try:
            owner = end_user_id(prepared.tenant_id, user)
            run_id = new_id()
            # Recorded before the run is enqueued: when the worker claims it, its owner is known.
            self.streams.manager(run_id, owner, InvokeFrom.SERVICE_API)
            yield AdmittedRun(prepared=prepared, run_id=run_id, owner=owner)
        except BaseException:
            admission.refund_workflow_run(prepared.tenant_id, prepared.plan)
            raise

    def create_run(
        self,
        session: Session,
        slot: AdmittedRun,
        *,
        inputs: Mapping[str, Any],
        query: str | None = None,
        conversation_id: str | None = None,
        message_id: str | None = None,
    ) -> StartedRun:
        """Within the caller's transaction (database only): the run record and its task.

        The task's outbox row is published after the caller's commit.
        """
        prepared = slot.prepared
        # The app may have gone between the checks and this transaction.
        require_app(session, prepared.tenant_id, prepared.app_id)
        session.add(
            WorkflowRun(
                id=slot.run_id,
                tenant_id=prepared.tenant_id,
                app_id=prepared.app_id,
                triggered_from=WorkflowRunTriggeredFrom.APP_RUN,
                version=PUBLISHED,
                graph=prepared.graph,
                inputs=dict(inputs),
                status=WorkflowRunStatus.RUNNING,
                created_by_role=CreatorRole.END_USER,
                created_by=slot.owner,
            )
        )
        session.flush()
        job = RunJob(
            tenant_id=prepared.tenant_id,
            app_id=prepared.app_id,
            mode=prepared.mode,
            user_id=slot.owner,
            invoke_from=InvokeFrom.SERVICE_API,
            query=query,
            conversation_id=conversation_id,
            message_id=message_id,
        )
        enqueue_run(
            self.runtime, session, run_id=slot.run_id, tenant_id=prepared.tenant_id,
            plan=prepared.plan, job=job,
        )  # fmt: skip
        return StartedRun(
            run_id=slot.run_id,
            user_id=slot.owner,
            conversation_id=conversation_id,
            message_id=message_id,
        )

    # --- streaming ------------------------------------------------------------------------------

    def events(
        self,
        tenant_id: str,
        run_id: str,
        user: str,
        *,
        after: str | None = None,
        until: Callable[[], bool] | None = None,
    ) -> Iterator[StreamItem]:
        """The run's events after stream id ``after`` (from the first one when None).

        Checks ownership now (NotFound), then returns the iterator: pings while the run is
        quiet, and the end after the run's final event (or earlier, at an event boundary, once
        ``until()`` is true). A finished run replays and closes; one whose stream has expired
        gets its terminal event rebuilt from the record (without id).
        """
        position = START if after is None else _stream_id(after)
        row = self._owned(tenant_id, run_id, user)
        manager = self.streams.manager(
            run_id, end_user_id(tenant_id, user), InvokeFrom.SERVICE_API, record_owner=False
        )
        if not manager.is_owner:
            raise NotFound("workflow run not found")
        last = self.streams.channel.last(run_id)
        if last is None and row.status != WorkflowRunStatus.RUNNING:
            return iter([StreamItem.local(_terminal_of(row), final=True)])
        if last is not None and last.final and parse_id(position) >= parse_id(last.id):
            return iter(())  # the client has everything, the terminal event included
        return manager.listen(position, until=until)

    def delivered_all(self, run_id: str, after: str | None) -> bool:
        """True when a client that has seen event ``after`` has the run's terminal event.

        Call it after :meth:`events` (which checks ownership).
        """
        if after is None:
            return False
        last = self.streams.channel.last(run_id)
        return last is not None and last.final and parse_id(_stream_id(after)) >= parse_id(last.id)

    def check_owner(self, tenant_id: str, run_id: str, user: str) -> None:
        """``NotFound`` unless ``user`` of ``tenant_id`` started the run."""
        self._owned(tenant_id, run_id, user)

    def wait(self, tenant_id: str, run_id: str, user: str) -> tuple[RunResult, AppQueueEvent]:
        """Block until the run's stream ends; the run's record and the stream's last event."""
        last: StreamItem | None = None
        for item in self.events(tenant_id, run_id, user):
            if item.final:
                last = item
        row = self._owned(tenant_id, run_id, user)
        final = last.model() if last is not None else _terminal_of(row)
        return RunResult(**_result_fields(row)), final

    # --- control and reading ----------------------------------------------------------------

    def stop(self, tenant_id: str, run_id: str, user: str) -> StopResult:
        """Ask the run to stop (its running attempt, or the next one while it waits)."""
        row = self._owned(tenant_id, run_id, user)
        owner = end_user_id(tenant_id, user)
        recorded = self.streams.control.owner(run_id)
        if recorded is not None and recorded != f"end-user-{owner}":
            raise NotFound("workflow run not found")
        stopping = AppQueueManager.set_stop_flag(
            self.streams.control,
            run_id,
            InvokeFrom.SERVICE_API,
            owner,
            ttl=self.streams.config.ownership_ttl,
        )
        return StopResult(stopping=stopping, status=row.status)

    def detail(self, tenant_id: str, run_id: str, user: str) -> RunDetail:
        """The run with its node executions."""
        with self.runtime.db.session() as session:
            row = _owned_row(session, tenant_id, run_id, end_user_id(tenant_id, user))
            nodes = session.scalars(
                select(WorkflowNodeExecution)
                .where(
                    WorkflowNodeExecution.tenant_id == tenant_id,
                    WorkflowNodeExecution.workflow_run_id == run_id,
                )
                .order_by(WorkflowNodeExecution.index, WorkflowNodeExecution.created_at)
            )
            return RunDetail(**_result_fields(row), node_executions=[_node_view(n) for n in nodes])

    # --- the operator's view (the dashboard): any run of a tenant, whoever started it ---------

    def operator_detail(self, tenant_id: str, run_id: str) -> OperatorRunDetail:
        """The run with its graph and node executions, for an operator."""
        with self.runtime.db.session() as session:
            row = _tenant_row(session, tenant_id, run_id)
            nodes = session.scalars(
                select(WorkflowNodeExecution)
                .where(
                    WorkflowNodeExecution.tenant_id == tenant_id,
                    WorkflowNodeExecution.workflow_run_id == run_id,
                )
                .order_by(WorkflowNodeExecution.index, WorkflowNodeExecution.created_at)
            )
            return OperatorRunDetail(
                **_result_fields(row),
                node_executions=[_node_view(n) for n in nodes],
                created_by=row.created_by,
                graph=row.graph,
            )

    def operator_events(
        self, tenant_id: str, run_id: str, *, after: str | None = None
    ) -> Iterator[StreamItem]:
        """As :meth:`events`, for an operator (any end user's run of the tenant)."""
        position = START if after is None else _stream_id(after)
        with self.runtime.db.session() as session:
            row = _tenant_row(session, tenant_id, run_id)
            session.expunge(row)
        last = self.streams.channel.last(run_id)
        if last is None and row.status != WorkflowRunStatus.RUNNING:
            return iter([StreamItem.local(_terminal_of(row), final=True)])
        if last is not None and last.final and parse_id(position) >= parse_id(last.id):
            return iter(())
        manager = self.streams.manager(
            run_id, row.created_by, InvokeFrom.SERVICE_API, record_owner=False
        )
        return manager.listen(position)

    def operator_stop(self, tenant_id: str, run_id: str) -> StopResult:
        """Ask the run to stop, as its end user would."""
        with self.runtime.db.session() as session:
            row = _tenant_row(session, tenant_id, run_id)
            owner, status = row.created_by, row.status
        stopping = AppQueueManager.set_stop_flag(
            self.streams.control,
            run_id,
            InvokeFrom.SERVICE_API,
            owner,
            ttl=self.streams.config.ownership_ttl,
        )
        return StopResult(stopping=stopping, status=status)

    def _owned(self, tenant_id: str, run_id: str, user: str) -> WorkflowRun:
        with self.runtime.db.session() as session:
            row = _owned_row(session, tenant_id, run_id, end_user_id(tenant_id, user))
            session.expunge(row)
            return row


def _owned_row(session: Session, tenant_id: str, run_id: str, owner: str) -> WorkflowRun:
    row = session.scalar(
        select(WorkflowRun).where(
            WorkflowRun.id == run_id,
            WorkflowRun.tenant_id == tenant_id,
            WorkflowRun.created_by == owner,
            WorkflowRun.created_by_role == CreatorRole.END_USER,
        )
    )
    if row is None:
        raise NotFound("workflow run not found")
    return row


def _tenant_row(session: Session, tenant_id: str, run_id: str) -> WorkflowRun:
    row = session.scalar(
        select(WorkflowRun).where(WorkflowRun.id == run_id, WorkflowRun.tenant_id == tenant_id)
    )
    if row is None:
        raise NotFound("workflow run not found")
    return row


def _stream_id(value: str) -> str:
    try:
        parse_id(value)
    except ValueError:
        raise BadRequest(
            "Last-Event-ID must be an event id of this run's stream (<ms>-<seq>)",
            details={"last_event_id": value[:100]},
        ) from None
    return value
