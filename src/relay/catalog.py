"""The task catalogue: every queue, every task's route and limits, every beat entry, in one table.

Policies are data: adding a task means adding a row here (and its module to ``TASK_MODULES``).
The unit tests check the table is consistent, ``relay queues check`` checks that every routed
queue has a live consumer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from relay.config import Plan, Settings
from relay.errors import ConfigError
from relay.retry import DEFAULT_POLICY, RetryPolicy


@dataclass(frozen=True)
class QueueSpec:
    """A named Celery queue and what runs on it."""

    name: str
    purpose: str


@dataclass(frozen=True)
class TaskSpec:
    """Route, time limits and retry policy of one task type."""

    name: str
    queue: str
    soft_time_limit: int = 300
    time_limit: int = 360
    retry: RetryPolicy = DEFAULT_POLICY
    # Queues a caller may pick instead of ``queue`` (e.g. by the tenant's plan); each needs a
    # consumer just like the default one.
    alt_queues: tuple[str, ...] = ()


@dataclass(frozen=True)
class BeatSpec:
    """A periodic task: run ``task`` every ``every``."""

    name: str
    task: str
    every: timedelta


QUEUES: tuple[QueueSpec, ...] = (
    QueueSpec("dataset", "document indexing, sandbox plan"),
    QueueSpec("priority_dataset", "document indexing, paid plans"),
    QueueSpec("pipeline", "RAG pipeline runs, sandbox plan"),
    QueueSpec("priority_pipeline", "RAG pipeline runs, paid plans"),
    QueueSpec("mail", "outgoing mail"),
    QueueSpec("ops_trace", "delivery of traces to observability providers"),
    QueueSpec("app_deletion", "removal of an app's data"),
    QueueSpec("workflow_storage", "persisting workflow runs and node executions"),
    QueueSpec("workflow_professional", "workflow runs, professional plan"),
    QueueSpec("workflow_team", "workflow runs, team and enterprise plans"),
    QueueSpec("workflow_sandbox", "workflow runs, sandbox plan"),
    QueueSpec("conversation", "conversation housekeeping"),
    QueueSpec("schedule", "periodic maintenance"),
    QueueSpec("monitor", "health probes and queue monitoring"),
)

# Three retries, 1 s, 2 s, 4 s (+ jitter): storage writes fail on brief database hiccups.
_STORAGE_RETRY = RetryPolicy(max_attempts=4, base_delay=1, max_delay=30)

PING = TaskSpec("relay.ping", "monitor", soft_time_limit=10, time_limit=15)

# Records its effect once per idempotency key: proves exactly-once effects end to end.
CANARY = TaskSpec("relay.canary", "monitor", soft_time_limit=10, time_limit=15)

REAP = TaskSpec("relay.maintenance.reap", "schedule", soft_time_limit=120, time_limit=150)

SCHEDULING_TICK = TaskSpec("relay.scheduling.tick", "schedule", soft_time_limit=20, time_limit=30)

PURGE = TaskSpec("relay.maintenance.purge", "schedule", soft_time_limit=300, time_limit=360)

# Retention clean-ups stop themselves at 80% of the soft limit; the next beat continues.
CLEAN_UNUSED_DATASETS = TaskSpec(
    "relay.retention.clean_unused_datasets", "schedule", soft_time_limit=900, time_limit=960
)

CLEAN_MESSAGES = TaskSpec(
    "relay.retention.clean_messages", "schedule", soft_time_limit=900, time_limit=960
)

CLEAN_WORKFLOW_RUNS = TaskSpec(
    "relay.retention.clean_workflow_runs", "schedule", soft_time_limit=900, time_limit=960
)

SNAPSHOT_QUEUES = TaskSpec(
    "relay.monitor.snapshot_queues", "monitor", soft_time_limit=20, time_limit=30
)
# Health components, noisy tenants and event error rates: alerts when they degrade and recover.
CHECK_HEALTH = TaskSpec("relay.monitor.check_health", "monitor", soft_time_limit=20, time_limit=30)

RELAY_OUTBOX = TaskSpec("relay.outbox.relay_pending", "schedule", soft_time_limit=60, time_limit=90)

CLEAN_DATASET = TaskSpec(
    "relay.dataset.clean_dataset", "dataset", soft_time_limit=600, time_limit=660
)

CLEAN_DOCUMENT = TaskSpec(
    "relay.dataset.clean_document", "dataset", soft_time_limit=120, time_limit=150
)

BATCH_CLEAN_DOCUMENTS = TaskSpec(
    "relay.dataset.batch_clean_documents", "dataset", soft_time_limit=300, time_limit=360
)

# Enable / disable a document: rebuild or drop its keyword rows (the service picks the queue).
ADD_DOCUMENT_TO_INDEX = TaskSpec(
    "relay.dataset.add_document_to_index",
    "dataset",
    soft_time_limit=300,
    time_limit=360,
    alt_queues=("priority_dataset",),
)

REMOVE_DOCUMENT_FROM_INDEX = TaskSpec(
    "relay.dataset.remove_document_from_index",
    "dataset",
    soft_time_limit=300,
    time_limit=360,
    alt_queues=("priority_dataset",),
)

RETRY_DOCUMENT_INDEXING = TaskSpec(
    "relay.dataset.retry_document_indexing",
    "dataset",
    soft_time_limit=1800,
    time_limit=1860,
    alt_queues=("priority_dataset",),
)

# Sandbox tenants on ``dataset``, paid plans on ``priority_dataset`` (the event handler picks).
INDEX_DOCUMENTS = TaskSpec(
    "relay.dataset.index_documents",
    "dataset",
    soft_time_limit=1800,
    time_limit=1860,
    alt_queues=("priority_dataset",),
)

SEND_MAIL = TaskSpec(
    "relay.mail.send",
    "mail",
    soft_time_limit=60,
    time_limit=90,
    retry=RetryPolicy(max_attempts=5, base_delay=30, max_delay=600),
)

DELIVER_OPS_TRACE = TaskSpec(
    "relay.ops_trace.deliver",
    "ops_trace",
    soft_time_limit=60,
    time_limit=90,
    retry=RetryPolicy(max_attempts=5, base_delay=5, max_delay=300),
)

DELIVER_OPS_TRACES = TaskSpec(
    "relay.ops_trace.deliver_batch",
    "ops_trace",
    soft_time_limit=300,
    time_limit=360,
    retry=RetryPolicy(max_attempts=5, base_delay=5, max_delay=300),
)

SAVE_WORKFLOW_RUN = TaskSpec(
    "relay.workflow_storage.save_run",
    "workflow_storage",
    soft_time_limit=30,
    time_limit=60,
    retry=_STORAGE_RETRY,
)

SAVE_NODE_EXECUTION = TaskSpec(
    "relay.workflow_storage.save_node_execution",
    "workflow_storage",
    soft_time_limit=30,
    time_limit=60,
    retry=_STORAGE_RETRY,
)

# Many node execution snapshots of one producer in one message and one transaction.
SAVE_NODE_EXECUTIONS = TaskSpec(
    "relay.workflow_storage.save_node_executions",
    "workflow_storage",
    soft_time_limit=60,
    time_limit=90,
    retry=_STORAGE_RETRY,
)

# Workflow runs on the tenant's plan queue (WORKFLOW_QUEUE_BY_PLAN). Never retried: a run's
# side effects (LLM calls, HTTP requests) must not happen twice; a lost worker's run is
# failed by the reaper. Limits sit above RELAY_WORKFLOW_MAX_TIME (1200 s), which the engine
# enforces itself and reports as a failed run.
RUN_WORKFLOW = TaskSpec(
    "relay.workflow.run",
    "workflow_sandbox",
    soft_time_limit=1300,
    time_limit=1360,
    retry=RetryPolicy(max_attempts=1),
    alt_queues=("workflow_professional", "workflow_team"),
)

# Batched and resumable: a run cut off by its time limit is finished by the retry.
REMOVE_APP = TaskSpec(
    "relay.app_deletion.remove_app",
    "app_deletion",
    soft_time_limit=1800,
    time_limit=1860,
    retry=RetryPolicy(max_attempts=5, base_delay=60, max_delay=1800),
)

TASKS: tuple[TaskSpec, ...] = (
    PING,
    CANARY,
    REAP,
    SCHEDULING_TICK,
    PURGE,
    CLEAN_UNUSED_DATASETS,
    CLEAN_MESSAGES,
    CLEAN_WORKFLOW_RUNS,
    SNAPSHOT_QUEUES,
    RELAY_OUTBOX,
    CLEAN_DATASET,
    CLEAN_DOCUMENT,
    BATCH_CLEAN_DOCUMENTS,
    ADD_DOCUMENT_TO_INDEX,
    REMOVE_DOCUMENT_FROM_INDEX,
    RETRY_DOCUMENT_INDEXING,
    INDEX_DOCUMENTS,
    SEND_MAIL,
    DELIVER_OPS_TRACE,
    DELIVER_OPS_TRACES,
    SAVE_WORKFLOW_RUN,
    SAVE_NODE_EXECUTION,
    RUN_WORKFLOW,
    REMOVE_APP,
    CHECK_HEALTH,
    SAVE_NODE_EXECUTIONS,
)

BEAT: tuple[BeatSpec, ...] = (
    BeatSpec("snapshot-queues", SNAPSHOT_QUEUES.name, timedelta(seconds=30)),
    # Republishes outbox rows whose after-commit publish never happened (process died).
    BeatSpec("relay-outbox", RELAY_OUTBOX.name, timedelta(seconds=5)),
    # Finds work stranded by dead workers (stale heartbeats, lost messages, stuck documents).
    BeatSpec("reaper", REAP.name, timedelta(seconds=30)),
    BeatSpec("scheduling-tick", SCHEDULING_TICK.name, timedelta(seconds=5)),
    BeatSpec("purge", PURGE.name, timedelta(hours=1)),
    BeatSpec("clean-unused-datasets", CLEAN_UNUSED_DATASETS.name, timedelta(days=1)),
    BeatSpec("clean-messages", CLEAN_MESSAGES.name, timedelta(hours=1)),
    BeatSpec("clean-workflow-runs", CLEAN_WORKFLOW_RUNS.name, timedelta(hours=1)),
    BeatSpec("check-health", CHECK_HEALTH.name, timedelta(seconds=30)),
)

TASK_MODULES: tuple[str, ...] = (
    "relay.tasks.ping",
    "relay.tasks.maintenance",
    "relay.tasks.scheduling",
    "relay.tasks.monitor",
    "relay.tasks.outbox_relay",
    "relay.tasks.dataset_cleanup",
    "relay.tasks.document_index",
    "relay.tasks.indexing",
    "relay.tasks.mail",
    "relay.tasks.ops_trace",
    "relay.tasks.ops_trace_batch",
    "relay.tasks.workflow_storage",
    "relay.tasks.workflow_run",
    "relay.tasks.app_deletion",
    "relay.tasks.retention",
)

WORKFLOW_QUEUE_BY_PLAN: dict[Plan, str] = {
    Plan.SANDBOX: "workflow_sandbox",
    Plan.PROFESSIONAL: "workflow_professional",
    Plan.TEAM: "workflow_team",
    Plan.ENTERPRISE: "workflow_team",
}


# Queues whose tenant work is released by the tenant-fair dispatcher (relay.scheduling) rather
# than published straight to Celery: one tenant's 5,000 uploads or long workflow backlog must
# not hold up the others.
FAIR_QUEUES: frozenset[str] = frozenset(
    {*WORKFLOW_QUEUE_BY_PLAN.values(), "dataset", "priority_dataset"}
)


def queue_names() -> list[str]:
    """Every declared queue, in catalogue order."""
    return [q.name for q in QUEUES]


def routed_queues() -> list[str]:
    """Queues that at least one task is routed to (each needs a live consumer)."""
    routed = {q for t in TASKS for q in (t.queue, *t.alt_queues)}
    return [name for name in queue_names() if name in routed]


_BY_NAME = {spec.name: spec for spec in TASKS}


def task_spec(name: str) -> TaskSpec:
    """The catalogue row of task ``name``; KeyError when it is not catalogued."""
    return _BY_NAME[name]


def spec_or_default(name: str, queue: str = "monitor") -> TaskSpec:
    """The catalogue row, or defaults for a task from an extra module (``--include``)."""
    return _BY_NAME.get(name) or TaskSpec(name, queue)


def enabled_beat_entries(settings: Settings) -> tuple[BeatSpec, ...]:
    """The beat entries to schedule: all but those named in ``RELAY_RETENTION_DISABLED_BEATS``.

    An unknown name is refused, so a typo cannot leave an entry silently running.
    """
    disabled = set(settings.retention.disabled_beats)
    unknown = sorted(disabled - {entry.name for entry in BEAT})
    if unknown:
        raise ConfigError(
            f"RELAY_RETENTION_DISABLED_BEATS names unknown beat entries: {', '.join(unknown)} "
            f"(known: {', '.join(entry.name for entry in BEAT)})"
        )
    return tuple(entry for entry in BEAT if entry.name not in disabled)


def longest_time_limit() -> int:
    """The largest hard time limit; the broker's visibility timeout must exceed it."""
    return max(t.time_limit for t in TASKS)
