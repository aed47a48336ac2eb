"""A code node in a published workflow runs in the sandbox of a real Celery worker, with the
settings the worker was given (``RELAY_WORKFLOW_CODE_*``)."""

from __future__ import annotations

import json

from relay.config import Settings
from tests.integration.streaming.support import SSEClient, edge, node, streaming_stack

from .conftest import require_sandbox

CODE = """
def main(n: str) -> dict:
    import os
    facts = {"uid": os.getuid(), "var": os.path.exists(os.environ.get("HOME", "") + "/../var")}
    try:
        import sqlalchemy
    except ImportError as exc:
        facts["import"] = str(exc)
    return {"out": {"double": int(n) * 2, **facts}}
"""


def _graph() -> dict[str, object]:
    start = node("start", "start", variables=[{"variable": "n", "type": "text-input"}])
    code = node(
        "code",
        "code",
        code=CODE,
        code_language="python3",
        variables=[{"variable": "n", "value_selector": ["start", "n"]}],
        outputs={"out": {"type": "object"}},
    )
    end = node("end", "end", outputs=[{"variable": "out", "value_selector": ["code", "out"]}])
    return {"nodes": [start, code, end], "edges": [edge("start", "code"), edge("code", "end")]}


def test_code_node_runs_sandboxed_in_a_worker(settings: Settings) -> None:
    require_sandbox()
    allowed = settings.workflow.model_copy(update={"code_allowed_packages": ["json-repair"]})
    with streaming_stack(settings.model_copy(update={"workflow": allowed})) as stack:
        app_id = stack.publish_app(_graph())
        client = SSEClient(stack.url, stack.tenant)
        try:
            events = client.run(app_id, "alice", n="21")
        finally:
            client.close()
    finished = [json.loads(e.data) for e in events if e.event == "workflow_succeeded"]
    assert len(finished) == 1, [e.event for e in events]
    out = finished[0]["outputs"]["out"]
    assert (out["double"], out["uid"], out["var"]) == (42, 65534, False)
    assert out["import"].startswith("No module named 'sqlalchemy'")
    assert "allowed packages (json-repair)" in out["import"]
