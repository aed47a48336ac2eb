from __future__ import annotations

import pytest

from relay import catalog
from relay.adapters.broker import celery_config, check_visibility_timeout
from relay.config import Plan, load_settings
from relay.errors import ConfigError
from relay.worker.celery_app import RelayCelery
from relay.worker.middleware import TaskChain

DIFY_QUEUES = {
    "dataset", "priority_dataset", "pipeline", "priority_pipeline", "mail", "ops_trace",
    "app_deletion", "workflow_storage", "workflow_professional", "workflow_team",
    "workflow_sandbox", "conversation", "schedule", "monitor",
}  # fmt: skip


def test_catalogue_declares_difys_queues() -> None:
    assert set(catalog.queue_names()) >= DIFY_QUEUES
    assert len(catalog.queue_names()) == len(set(catalog.queue_names()))


def test_every_task_is_routed_to_a_declared_queue() -> None:
    declared = set(catalog.queue_names())
    for spec in catalog.TASKS:
        assert spec.queue in declared, spec
        assert 0 < spec.soft_time_limit < spec.time_limit, spec
    assert len({t.name for t in catalog.TASKS}) == len(catalog.TASKS)


def test_every_catalogued_task_and_beat_entry_is_registered(tmp_path: object) -> None:
    config = celery_config(load_settings(var_dir=tmp_path), "redis://127.0.0.1:6379/15")
    celery = RelayCelery(config, chain=TaskChain())
    celery.loader.import_default_modules()
    registered = set(celery.tasks)
    for spec in catalog.TASKS:
        assert spec.name in registered, f"{spec.name} is catalogued but no module defines it"
    for entry in catalog.BEAT:
        assert entry.task in registered, f"beat entry {entry.name} names unknown {entry.task}"
        assert entry.every.total_seconds() > 0
    relay_tasks = {name for name in registered if name.startswith("relay.")}
    assert relay_tasks == {t.name for t in catalog.TASKS}, "a relay task is missing a route"


def test_workflow_queue_for_every_plan() -> None:
    assert set(catalog.WORKFLOW_QUEUE_BY_PLAN) == set(Plan)
    assert set(catalog.WORKFLOW_QUEUE_BY_PLAN.values()) <= set(catalog.queue_names())


def test_visibility_timeout_must_exceed_longest_time_limit(tmp_path: object) -> None:
    too_short = load_settings(var_dir=tmp_path, celery={"visibility_timeout": 1})
    with pytest.raises(ConfigError, match="RELAY_CELERY_VISIBILITY_TIMEOUT"):
        check_visibility_timeout(too_short)
    check_visibility_timeout(load_settings(var_dir=tmp_path))
