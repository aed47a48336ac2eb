"""The persistence layer's records: statuses, retries, interrupted nodes."""

from __future__ import annotations

from relay.workflow import (
    InMemoryWorkflowRunStore,
    NodeRunStreamChunkEvent,
    PersistenceLayer,
    RunRecordInfo,
)

from .helpers import build, edge, end, make_engine, node, offline_services, probe, start


def test_records_of_a_partially_succeeded_run_with_retries() -> None:
    store = InMemoryWorkflowRunStore()
    graph = build(
        [
            start(),
            probe(
                "flaky",
                value="ok",
                fail_times=1,
                retry_config={"retry_enabled": True, "max_retries": 2, "retry_interval": 1},
            ),
            probe(
                "bad",
                fail_times=9,
                error_strategy="default-value",
                default_value=[{"key": "value", "value": "d"}],
            ),
            end(a=["flaky", "value"], b=["bad", "value"]),
        ],
        [edge("start", "flaky"), edge("flaky", "bad"), edge("bad", "end")],
    )
    layer = PersistenceLayer(store, RunRecordInfo(tenant_id="t1", app_id="app-1", inputs={"k": 1}))
    list(make_engine(graph, layers=[layer]).run())
    run = store.get_run("run-1")
    assert run is not None
    assert (run.status, run.exceptions_count, run.total_steps) == ("partial-succeeded", 1, 4)
    assert run.outputs == {"a": "ok", "b": "d"}
    assert run.finished_at is not None
    assert run.tenant_id == "t1"
    records = [(r.node_id, r.status, r.index) for r in store.node_executions("run-1")]
    assert records == [
        ("start", "succeeded", 1),
        ("flaky", "retry", 2),
        ("flaky", "succeeded", 2),
        ("bad", "exception", 3),
        ("end", "succeeded", 4),
    ]


def test_aborted_run_closes_running_nodes() -> None:
    store = InMemoryWorkflowRunStore()
    graph = build(
        [
            start(),
            node(
                "llm",
                "llm",
                model={"provider": "openai", "name": "m"},
                prompt_template=[{"role": "user", "text": "a b c d e f g h i j"}],
            ),
            end(t=["llm", "text"]),
        ],
        [edge("start", "llm"), edge("llm", "end")],
    )
    layer = PersistenceLayer(store, RunRecordInfo(tenant_id="t1", app_id="app-1"))
    engine = make_engine(graph, layers=[layer], services=offline_services(token_delay=0.01))
    for event in engine.run():
        if isinstance(event, NodeRunStreamChunkEvent):
            engine.stop("enough")
    run = store.get_run("run-1")
    assert run is not None
    assert (run.status, run.error) == ("stopped", "enough")
    assert [(r.node_id, r.status) for r in store.node_executions("run-1")] == [
        ("start", "succeeded"),
        ("llm", "failed"),
    ]
