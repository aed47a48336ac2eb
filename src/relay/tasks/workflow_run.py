"""``relay.workflow.run``: one attempt of a workflow run, its events published to the run's stream.

The attempt claims the run (a redelivered message or a second worker finds it claimed and does
nothing), builds the engine from the run record's graph with the limits and LLM provider from
settings, and publishes every engine event, converted once (``to_queue_event``), to the run's
channel. A watcher thread beats (so the reaper knows the worker lives) and polls the attempt's
stop flag; a stop calls ``engine.stop()``, which aborts between nodes and inside streaming
nodes, and the run ends with its ``stop`` event. When the worker shuts down (SIGTERM), the
watcher pauses the run at its next node boundary: it is checkpointed and resubmitted like a
time slice, and another worker continues it on the same stream. Whatever happens, the run's
stream gets exactly one final event: the engine's end, ``message_end`` for chat apps, or
``error``.

Runs are not retried (``max_attempts=1``): a workflow's side effects (LLM calls, HTTP requests)
must not happen twice. A lost worker's run is failed by the reaper instead.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from relay import catalog
from relay.background import Periodic
from relay.catalog import WORKFLOW_QUEUE_BY_PLAN
from relay.config import Plan
from relay.errors import QuotaExceeded
from relay.events.handlers.tenant_plan import plan_key
from relay.models import App, Tenant, WorkflowRun
from relay.monitoring.tracing import WorkflowTracingLayer
from relay.resilience.shutdown import DRAIN
from relay.retry import FatalTaskError, OutcomeFailed
from relay.scheduling.dispatcher import ticket_of
from relay.scheduling.timeslice import (
    TenantSliceController,
    TimeSlicePolicy,
    requeue_continuation,
)
from relay.services.chat_service import MESSAGE_MODES, ChatService
from relay.services.published_apps import SqlPublishedApps
from relay.services.run_streams import RunJob, end_with_error
from relay.services.segment_service import SqlKnowledgeIndex
from relay.services.tool_providers import SqlTenantTools
from relay.services.workflow_check import declared_values
from relay.streaming import (
    AppQueueManager,
    Claim,
    ErrorEvent,
    MessageEndEvent,
    RunFinishedError,
    RunStoppedError,
    StopEvent,
    to_queue_event,
)
from relay.tasks.base import RelayTask, relay_task
from relay.tasks.workflow_run_store import QueuedRunStore
from relay.workflow import (
    CodeSandboxConfig,
    EngineConfig,
    ExecutionLimits,
    ExecutionLimitsLayer,
    GraphEngine,
    GraphEngineLayer,
    HttpRequestConfig,
    LLMProviderConfig,
    LLMSettings,
    PersistenceLayer,
    RunInfo,
    RunRecordInfo,
    SystemVariables,
    TimeSliceLayer,
    create_engine,
    create_services,
    graph_from_dict,
)
from relay.workflow.config import WebToolsConfig
from relay.workflow.events import (
    GRAPH_END_EVENTS,
    GraphEngineEvent,
    GraphRunFailedEvent,
    GraphRunPartialSucceededEvent,
    GraphRunPausedEvent,
    GraphRunSucceededEvent,
    NodeRunSucceededEvent,
)
from relay.workflow.nodes.base import NodeServices
from relay.workflow.tools.catalog import builtin_tools, tenant_builders
from relay.workflow.tools.workflow_apps import WorkflowAppTools

if TYPE_CHECKING:
    from relay.config import WorkflowSettings
    from relay.runtime import Runtime

log = logging.getLogger(__name__)

STOPPED_BY_USER = "stopped by user"
WORKER_SHUTTING_DOWN = "worker shutting down"


# --- settings onto the engine's models ------------------------------------------------------------


def llm_settings(settings: WorkflowSettings) -> LLMSettings:
    """The LLM provider every llm node uses (offline unless configured)."""
    return LLMSettings(
        default=LLMProviderConfig(
            kind=settings.llm_provider,
            base_url=settings.llm_base_url,
            api_key=settings.llm_api_key,
            model=settings.llm_model,
            token_delay=settings.llm_token_delay,
            reply=settings.llm_reply,
            timeout=settings.llm_timeout,
            vision=settings.llm_vision,
        )
    )


def code_sandbox_config(settings: WorkflowSettings) -> CodeSandboxConfig:
    """Isolation, packages and limits of code nodes."""
    return CodeSandboxConfig(
        mode=settings.code_sandbox,
        allowed_packages=tuple(settings.code_allowed_packages),
        time_limit=settings.code_time_limit,
        memory_limit_mb=settings.code_memory_limit_mb,
        workdir_size_mb=settings.code_workdir_mb,
    )


def web_tools_config(settings: WorkflowSettings) -> WebToolsConfig:
    """Where the built-in web tools send their requests."""
    return WebToolsConfig(
        wikipedia_url=settings.tools_wikipedia_url,
        duckduckgo_url=settings.tools_duckduckgo_url,
        searxng_url=settings.tools_searxng_url,
        jina_reader_url=settings.tools_jina_reader_url,
        jina_search_url=settings.tools_jina_search_url,
    )


def execution_limits(settings: WorkflowSettings) -> ExecutionLimits:
    """Max steps and time per run."""
    return ExecutionLimits(max_steps=settings.max_steps, max_time=settings.max_time)


def slice_layers(runtime: Runtime, job: RunJob) -> list[GraphEngineLayer]:
    """The time slice: past its plan's slice, with another tenant waiting on the same workflow
    queue, the run pauses at the next node boundary (checkpointed) and is resubmitted."""
    plan = _tenant_plan(runtime, job.tenant_id)
    policy = TimeSlicePolicy(runtime.dispatcher.queue, runtime.settings.scheduling)
    controller = TenantSliceController(
        policy, job.tenant_id, plan, queue=WORKFLOW_QUEUE_BY_PLAN[plan]
    )
    return [TimeSliceLayer(controller)]


def _tenant_plan(runtime: Runtime, tenant_id: str) -> Plan:
    cached = runtime.redis.get(plan_key(tenant_id))
    if cached:
        return Plan(str(cached))
    with runtime.db.session() as session:
        tenant = session.get(Tenant, tenant_id)
        return Plan(tenant.plan) if tenant is not None else Plan.SANDBOX


def _continue_later(task: RelayTask, run_id: str, job: RunJob) -> None:
    """Resubmit a paused run through the fair scheduler; it resumes from its checkpoint."""
    runtime = task.runtime
    dispatcher = runtime.dispatcher
    plan = _tenant_plan(runtime, job.tenant_id)
    args = [run_id, job.model_dump(mode="json")]
    continuation = f"{task.request.id}:next"  # deterministic: a redelivery submits nothing new
    ticket = ticket_of(task.request)
    if ticket is not None:
        requeue_continuation(
            dispatcher, ticket, plan, task.name, args, continuation_id=continuation
        )
    else:
        dispatcher.submit(
            job.tenant_id,
            plan,
            task.name,
            args,
            queue=WORKFLOW_QUEUE_BY_PLAN[plan],
            task_id=continuation,
        )


# --- the task ---------------------------------------------------------------------------------


class WorkflowRunFailed(OutcomeFailed):
    """The run's graph failed: the task ends in Celery's FAILURE state (what ``celery events``
    and Flower show) naming the run, whose record holds the details. Never dead-lettered: the
    run already ended with its ``error`` event and a replay would find it finished."""

    def __init__(self, run_id: str, error: str) -> None:
        super().__init__(f"workflow run {run_id} failed: {error}")
        self.run_id = run_id
        self.error = error
        # Celery stores an exception as its type and ``args`` and rebuilds it as ``type(*args)``
        # (for result readers, Flower): the args must be the constructor's.
        self.args = (run_id, error)

    def __str__(self) -> str:
        return self.message


@relay_task(catalog.RUN_WORKFLOW)
def run_workflow(self: RelayTask, run_id: str, job: dict[str, Any]) -> dict[str, Any]:
    """Run (or continue) workflow run ``run_id``; returns ``{"run_id", "outcome"}``."""
    try:
        parsed = RunJob.model_validate(job)
    except ValueError as exc:
        raise FatalTaskError(f"invalid workflow run job: {exc}") from exc
    self.require_tenant(parsed.tenant_id)
    runner = WorkflowRunner(self.runtime, run_id, parsed)
    outcome = runner.execute()
    if outcome == "paused":
        _continue_later(self, run_id, parsed)
    if runner.failure is not None:
        raise WorkflowRunFailed(run_id, runner.failure)
    return {"run_id": run_id, "outcome": outcome}


@dataclass
class _Usage:
    provider: str = "offline"
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, event: GraphEngineEvent) -> None:
        if isinstance(event, NodeRunSucceededEvent) and event.node_type == "llm":
            self.provider = str(event.metadata.get("provider") or self.provider)
            self.prompt_tokens += int(event.metadata.get("prompt_tokens") or 0)
            self.completion_tokens += int(event.metadata.get("completion_tokens") or 0)


class _Watcher:
    """Beats for the attempt and polls its stop flag, on a ``Periodic`` of its own."""

    def __init__(self, manager: AppQueueManager, beat: float, poll: float) -> None:
        self.manager = manager
        self.beat = beat
        self.on_stop: Callable[[], None] = lambda: None
        self.on_drain: Callable[[], None] = lambda: None
        self._stopped = False
        self._drained = False
        self._next_beat = time.monotonic() + beat
        self._job = Periodic("run-watcher", self._tick, poll)

    def start(self) -> None:
        self._job.ensure()

    def close(self) -> None:
        self._job.stop(timeout=5)

    def _tick(self) -> None:
        if not self._drained and DRAIN.is_set():
            # The worker is shutting down: the run pauses at its next node boundary.
            self._drained = True
            self.on_drain()
        try:
            if not self._stopped and self.manager.poll_stop():
                self._stopped = True
                self.on_stop()
            if time.monotonic() >= self._next_beat:
                self.manager.heartbeat()
                self._next_beat = time.monotonic() + self.beat
        except Exception:  # a Redis blip: try again next tick
            log.warning("run watcher tick failed", exc_info=True)


class WorkflowRunner:
    """One attempt of one run."""

    def __init__(
        self,
        runtime: Runtime,
        run_id: str,
        job: RunJob,
        extra_layers: Sequence[GraphEngineLayer] = (),
    ) -> None:
        self.runtime = runtime
        self.run_id = run_id
        self.job = job
        self.extra_layers = list(extra_layers)
        self.streams = runtime.streams
        self.settings = runtime.settings
        self.store = QueuedRunStore(
            runtime, self.streams.control, self.settings.streaming.checkpoint_ttl
        )
        self.usage = _Usage()
        self.answer: list[str] = []
        # The error of a graph that ended failed (the task then ends in FAILURE).
        self.failure: str | None = None

    def execute(self) -> str:
        """Run the attempt; returns ``finished``, ``paused`` or why nothing ran."""
        manager = self.streams.manager(self.run_id, self.job.user_id, self.job.invoke_from)
        claim = manager.claim()
        if not claim.claimed:
            return self._not_claimed(claim)
        streaming = self.settings.streaming
        watcher = _Watcher(manager, streaming.heartbeat_interval, streaming.stop_poll_interval)
        state = "finished"
        events: Generator[GraphEngineEvent, None, None] | None = None
        try:
            engine = self._engine()
            if engine is None:
                manager.publish(
                    ErrorEvent(code="run_not_found", message="the run record is gone"), final=True
                )
                return "missing"
            watcher.on_stop = lambda: engine.stop(STOPPED_BY_USER)
            watcher.on_drain = lambda: engine.pause(WORKER_SHUTTING_DOWN)
            if manager.poll_stop():
                engine.stop(STOPPED_BY_USER)
            watcher.start()
            checkpoint = self.store.load_checkpoint(self.run_id)
            events = engine.resume(checkpoint) if checkpoint else engine.run()
            state = self._pump(manager, engine, events)
            return state
        except Exception as exc:  # SoftTimeLimitExceeded included: the run ends either way
            log.exception("workflow run failed", extra={"action": "workflow_run.crashed"})
            end_with_error(self.runtime, self.run_id, "run_failed", f"{type(exc).__name__}: {exc}")
            raise
        finally:
            if events is not None:
                events.close()  # stops whatever still runs on the attempt's behalf
            self.store.close()  # the buffered node snapshots go to the outbox
            watcher.close()
            manager.release("paused" if state == "paused" else "finished")

    def _not_claimed(self, claim: Claim) -> str:
        if claim.state == "finished":
            return "already_finished"
        # Running elsewhere: a duplicate delivery while that attempt lives, or the remains of an
        # attempt whose worker died (it beats no more; the reaper or this delivery ends it).
        stale = self.run_id in self.streams.control.stale(
            self.settings.streaming.worker_lost_after, 10_000
        )
        if stale:
            end_with_error(self.runtime, self.run_id, "worker_lost", "the run's worker was lost")
            return "worker_lost"
        return "running_elsewhere"

    def _engine(self) -> GraphEngine | None:
        with self.runtime.db.session() as session:
            row = session.get(WorkflowRun, self.run_id)
            if row is None or row.tenant_id != self.job.tenant_id:
                return None
            graph, inputs, version = row.graph, dict(row.inputs), row.version
            role, created_by = row.created_by_role, row.created_by
            # The app's declared environment and conversation variables (from its Dify export):
            # read here, not sent in the message, since environment values may be secrets.
            app = session.get(App, row.app_id)
            environment = declared_values(app.environment_variables if app else None)
            conversation = declared_values(app.conversation_variables if app else None)
        job, ws = self.job, self.settings.workflow
        history = (
            ChatService(self.runtime).history(job.tenant_id, job.conversation_id)
            if job.conversation_id
            else []
        )
        info = RunRecordInfo(
            tenant_id=job.tenant_id,
            app_id=job.app_id,
            version=version,
            graph=graph,
            inputs=inputs,
            created_by_role=role,
            created_by=created_by,
        )
        layers: list[GraphEngineLayer] = [
            # First: its run span is open before any other layer's hook runs.
            WorkflowTracingLayer(self.run_id, job.tenant_id, job.app_id),
            ExecutionLimitsLayer(execution_limits(ws)),
            PersistenceLayer(self.store, info),
            *slice_layers(self.runtime, job),
            *self.extra_layers,
        ]
        apps = SqlPublishedApps(self.runtime.db)
        http = HttpRequestConfig(allow_private_addresses=ws.http_allow_private_addresses)
        # Tenants' stored providers (API, MCP) and credentials, read per tool call.
        stored = SqlTenantTools(self.runtime.db, ws.tool_credentials_key)
        tools = builtin_tools(web_tools_config(ws), http).with_tenant(stored, tenant_builders(http))

        def services_at(depth: int) -> NodeServices:
            # Workflow-as-tool runs nested apps with the same services, one level deeper.
            return create_services(
                llm=llm_settings(ws),
                # Knowledge-retrieval nodes search the keyword index built by document indexing.
                knowledge=SqlKnowledgeIndex(self.runtime.db),
                http=http,
                code=code_sandbox_config(ws),
                tools=tools.with_workflows(WorkflowAppTools(apps, services_at, depth)),
            )

        services = services_at(0)
        return create_engine(
            graph_from_dict(graph),
            inputs=inputs,
            environment=environment,
            conversation=conversation,
            system=SystemVariables(
                query=job.query,
                conversation_id=job.conversation_id,
                dialogue_count=len(history) // 2 + 1 if job.conversation_id else None,
            ),
            services=services,
            run_info=RunInfo(
                tenant_id=job.tenant_id,
                app_id=job.app_id,
                run_id=self.run_id,
                user_id=job.user_id,
                chat_history=tuple(history),
            ),
            config=EngineConfig(max_workers=ws.max_workers),
            layers=layers,
        )

    def _pump(
        self, manager: AppQueueManager, engine: GraphEngine, events: Iterator[GraphEngineEvent]
    ) -> str:
        for event in events:
            self.usage.add(event)
            if isinstance(event, GraphRunPausedEvent):
                return self._paused(manager)
            queued = to_queue_event(event)
            if queued is None:
                continue
            if isinstance(event, GRAPH_END_EVENTS):
                self._finish(manager, event)
                return "finished"
            if queued.event.value == "text_chunk":
                self.answer.append(getattr(queued, "text", ""))
            try:
                manager.publish(queued)
            except RunStoppedError:
                continue  # stopping: the engine winds down; only its end goes out
            except RunFinishedError:
                engine.stop("the run was ended elsewhere")
                return "finished"
        return "finished"

    def _paused(self, manager: AppQueueManager) -> str:
        if not manager.poll_stop():
            return "paused"
        # The stop arrived while this slice was pausing: it applies to this attempt.
        record = self.store.get_run(self.run_id)
        if record is not None:
            self.store.mark_stopped(record, STOPPED_BY_USER)
        self.store.save_checkpoint(self.run_id, None)
        manager.publish(StopEvent(reason=STOPPED_BY_USER), final=True)
        return "finished"

    def _finish(self, manager: AppQueueManager, event: GraphEngineEvent) -> None:
        queued = to_queue_event(event)
        assert queued is not None
        if isinstance(event, GraphRunFailedEvent):
            self.failure = event.error or "the graph failed"
        job = self.job
        chat = job.mode in MESSAGE_MODES and job.conversation_id and job.query is not None
        succeeded = isinstance(event, GraphRunSucceededEvent | GraphRunPartialSucceededEvent)
        if not (chat and succeeded):
            manager.publish(queued, final=True)
            return
        with contextlib.suppress(RunStoppedError):  # a stop this late changes nothing
            manager.publish(queued)
        self._answered(manager, event)

    def _answered(self, manager: AppQueueManager, event: GraphEngineEvent) -> None:
        job = self.job
        assert job.conversation_id is not None
        assert job.query is not None
        outputs = getattr(event, "outputs", {}) or {}
        answer = str(outputs.get("answer", "".join(self.answer)))
        try:
            message = ChatService(self.runtime).record_answer(
                job.tenant_id,
                job.app_id,
                conversation_id=job.conversation_id,
                run_id=self.run_id,
                query=job.query,
                answer=answer,
                message_tokens=self.usage.prompt_tokens,
                answer_tokens=self.usage.completion_tokens,
                provider=self.usage.provider,
                message_id=job.message_id,
            )
        except QuotaExceeded as exc:
            manager.publish(ErrorEvent(code=exc.code, message=exc.message), final=True)
            return
        usage = {
            "prompt_tokens": self.usage.prompt_tokens,
            "completion_tokens": self.usage.completion_tokens,
            "total_tokens": self.usage.prompt_tokens + self.usage.completion_tokens,
            "provider": self.usage.provider,
        }
        end = MessageEndEvent(
            message_id=message.id,
            conversation_id=message.conversation_id,
            answer=answer,
            usage=usage,
        )
        manager.publish(end, final=True)
