"""The code node's sandbox: isolated from the parent, killed at its limits, typed outputs."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import psutil
import pytest

from relay.workflow import (
    CodeSandboxConfig,
    GraphRunAbortedEvent,
    GraphRunFailedEvent,
    GraphRunSucceededEvent,
    NodeRunFailedEvent,
    NodeRunStartedEvent,
    NodeRunSucceededEvent,
)
from relay.workflow.events import GraphEngineEvent
from relay.workflow.graph import Graph
from relay.workflow.sandbox.bwrap import environment as sandbox_environment
from tests.unit.workflow.helpers import (
    build,
    edge,
    end,
    make_engine,
    node,
    offline_services,
    start,
    trace,
)

from .conftest import require_sandbox

SECRET = "s3cr3t-in-parent-memory"

ISOLATION = """
def main(probe: str) -> dict:
    import os, sys
    report = {"env": dict(os.environ), "uid": os.getuid()}
    for name in ("environ", "mem"):
        try:
            with open(f"/proc/{probe}/{name}", "rb") as f:
                report[name] = f.read(64).decode(errors="replace")
        except OSError as exc:
            report[name] = type(exc).__name__
    parent = ("relay", "tests", "pytest", "_pytest")
    report["parent_modules"] = sorted(m for m in sys.modules if m.startswith(parent))
    return {"report": report}
"""


def _code_graph(code: str, outputs: dict[str, str] | None = None, **data: Any) -> Graph:
    declared = outputs or {"report": "object"}
    return build(
        [
            start("probe"),
            node(
                "code",
                "code",
                code=code,
                code_language="python3",
                variables=[{"variable": "probe", "value_selector": ["start", "probe"]}],
                outputs={k: {"type": v} for k, v in declared.items()},
                **data,
            ),
            end(out=["code", next(iter(declared))]),
        ],
        [edge("start", "code"), edge("code", "end")],
    )


def _run(
    code: str, outputs: dict[str, str] | None = None, probe: str = "x", **config: Any
) -> list[GraphEngineEvent]:
    services = offline_services(code=CodeSandboxConfig(**config))
    return list(make_engine(_code_graph(code, outputs), {"probe": probe}, services=services).run())


def _leftover_processes() -> list[psutil.Process]:
    """Sandbox processes still alive, once given 5 s to go away."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if process.info["status"] != psutil.STATUS_ZOMBIE and "relay-sandbox-child" in cmdline:
            found.append(process)
    _, alive = psutil.wait_procs(found, timeout=5)
    return [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


def test_code_cannot_read_parent_memory_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    require_sandbox()
    monkeypatch.setenv("RELAY_TEST_SECRET", "s3cr3t-in-parent-env")
    assert SECRET  # lives in this process's memory
    events = _run(ISOLATION, probe=str(os.getpid()))
    final = events[-1]
    assert isinstance(final, GraphRunSucceededEvent), final
    report = final.outputs["out"]
    assert "s3cr3t" not in json.dumps(report)
    assert report["parent_modules"] == []  # a fresh interpreter, not a fork of this one
    assert "RELAY_TEST_SECRET" not in report["env"]
    assert set(report["env"]) <= {*sandbox_environment(), "PWD"}
    assert report["uid"] == 65534
    # The parent is in another pid namespace: its /proc entries do not exist for the code.
    assert report["environ"] == "FileNotFoundError"
    assert report["mem"] == "FileNotFoundError"


def test_unsafe_local_mode_runs_unisolated_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("RELAY_TEST_SECRET", "s3cr3t-in-parent-env")
    with caplog.at_level(logging.WARNING, logger="relay.workflow.nodes.sandbox"):
        events = _run(ISOLATION, probe=str(os.getpid()), mode="unsafe-local")
    final = events[-1]
    assert isinstance(final, GraphRunSucceededEvent), final
    report = final.outputs["out"]
    assert "RELAY_TEST_SECRET" not in report["env"]
    assert report["parent_modules"] == []
    assert any("WITHOUT isolation" in r.getMessage() for r in caplog.records)
    if os.geteuid() == 0:  # as root the child drops to nobody: the parent's /proc is closed
        assert report["uid"] == 65534
        assert report["environ"] == "PermissionError"


def test_code_is_killed_at_its_time_limit() -> None:
    require_sandbox()
    code = "def main(probe):\n    while True:\n        pass\n"
    events = _run(code, time_limit=0.5)
    assert trace(events)[-2:] == ["NodeRunFailed code", "GraphRunFailed"]
    failed = events[-2]
    assert isinstance(failed, NodeRunFailedEvent)
    assert failed.error == "code execution exceeded its time limit of 0.5s and was killed"
    assert failed.elapsed_time >= 0.5
    assert _leftover_processes() == []


def test_code_is_stopped_when_the_run_is_aborted() -> None:
    require_sandbox()
    code = "def main(probe):\n    while True:\n        pass\n"
    engine = make_engine(
        _code_graph(code),
        {"probe": "x"},
        services=offline_services(code=CodeSandboxConfig(time_limit=60)),
    )
    events = []
    for event in engine.run():
        events.append(event)
        if isinstance(event, NodeRunStartedEvent) and event.node_id == "code":
            engine.stop("cancelled")
    assert trace(events)[-2:] == ["NodeRunStarted code", "GraphRunAborted"]
    assert events[-1] == GraphRunAbortedEvent(reason="cancelled", outputs={})
    assert _leftover_processes() == []


def test_code_memory_limit() -> None:
    code = (
        "def main(probe):\n    block = bytearray(1024 * 1024 * 1024)\n    return {'report': {}}\n"
    )
    events = _run(code, memory_limit_mb=128)
    assert events[-1] == GraphRunFailedEvent(
        error="code failed: MemoryError: the code exceeded its memory limit", exceptions_count=0
    )


@pytest.mark.parametrize(
    ("code", "outputs", "error"),
    [
        (
            "def main(probe):\n    return {'n': 'x'}\n",
            {"n": "number"},
            "output 'n' must be number, got str",
        ),
        (
            "def main(probe):\n    return {}\n",
            {"n": "number"},
            "output 'n' is missing from what main() returned",
        ),
        (
            "def main(probe):\n    return {'n': [1, 'a']}\n",
            {"n": "array[number]"},
            "output 'n' must be array[number], got list",
        ),
        (
            "def main(probe):\n    return 1 / 0\n",
            {"n": "number"},
            "code failed: ZeroDivisionError: division by zero",
        ),
        ("x = 1\n", {"n": "number"}, "code failed: the code must define a function main()"),
        (
            "def main(probe):\n    return {'n': object()}\n",
            {"n": "number"},
            "code failed: main() returned data that is not JSON: "
            "Object of type object is not JSON serializable",
        ),
    ],
)
def test_code_errors_are_clear(code: str, outputs: dict[str, str], error: str) -> None:
    events = _run(code, outputs)
    assert events[-1] == GraphRunFailedEvent(error=error, exceptions_count=0)


def test_code_outputs_inputs_and_prints() -> None:
    code = "def main(probe):\n    print('debug', probe)\n    return {'n': 2.5, 'extra': 1}\n"
    events = _run(code, {"n": "number"})
    done = next(e for e in events if isinstance(e, NodeRunSucceededEvent) and e.node_id == "code")
    assert (done.inputs, done.outputs) == ({"probe": "x"}, {"n": 2.5})
    assert done.process_data == {"stdout": "debug x\n"}
