"""Packages in the code sandbox: the allowed ones import, others fail saying how to allow them."""

from __future__ import annotations

from typing import Any

import pytest

from relay.workflow import CodeSandboxConfig, GraphRunFailedEvent, GraphRunSucceededEvent
from relay.workflow.nodes.sandbox import sandbox_status
from relay.workflow.sandbox.packages import package_view
from tests.unit.workflow.helpers import build, edge, end, make_engine, node, offline_services, start

from .conftest import require_sandbox, require_sandbox_packages


def _run(code: str, **config: Any) -> Any:
    graph = build(
        [
            start("probe"),
            node(
                "code",
                "code",
                code=code,
                code_language="python3",
                variables=[{"variable": "probe", "value_selector": ["start", "probe"]}],
                outputs={"out": {"type": "object"}},
            ),
            end(out=["code", "out"]),
        ],
        [edge("start", "code"), edge("code", "end")],
    )
    services = offline_services(code=CodeSandboxConfig(**config))
    return list(make_engine(graph, {"probe": "x"}, services=services).run())[-1]


@pytest.fixture(autouse=True)
def _sandbox() -> None:
    require_sandbox()


def test_numpy_and_pandas_work_in_the_sandbox() -> None:
    require_sandbox_packages("numpy", "pandas")
    code = """
def main(probe):
    import numpy as np
    import pandas as pd
    frame = pd.DataFrame({"a": np.arange(4), "b": list("wxyz")})
    return {"out": {"sum": int(frame["a"].sum()), "last": frame.iloc[-1]["b"]}}
"""
    assert _run(code) == GraphRunSucceededEvent(outputs={"out": {"sum": 6, "last": "z"}})


def test_other_allowed_packages_import() -> None:
    require_sandbox_packages("json_repair", "sympy", "jieba", "requests")
    code = """
def main(probe):
    import json_repair, sympy, requests, jieba
    x = sympy.symbols("x")
    return {"out": {"fixed": json_repair.loads("{'a': 1"), "d": str(sympy.diff(x**3, x))}}
"""
    assert _run(code) == GraphRunSucceededEvent(outputs={"out": {"fixed": {"a": 1}, "d": "3*x**2"}})


def test_requests_cannot_reach_anything() -> None:
    """The sandbox has no network: requests imports, and every connection fails."""
    require_sandbox_packages("requests")
    code = """
def main(probe):
    import requests
    try:
        requests.get("http://127.0.0.1:9/", timeout=2)
    except requests.ConnectionError as exc:
        return {"out": {"error": type(exc).__name__}}
    return {"out": {"error": None}}
"""
    assert _run(code) == GraphRunSucceededEvent(outputs={"out": {"error": "ConnectionError"}})


@pytest.mark.parametrize("module", ["celery", "sqlalchemy", "relay", "redis", "pyseccomp"])
def test_a_package_not_allowed_fails_saying_how_to_allow_it(module: str) -> None:
    final = _run(f"def main(probe):\n    import {module}\n    return {{'out': {{}}}}\n")
    assert isinstance(final, GraphRunFailedEvent)
    assert final.error.startswith(f"code failed: ModuleNotFoundError: No module named '{module}'")
    assert "RELAY_WORKFLOW_CODE_ALLOWED_PACKAGES" in final.error


def test_the_allow_list_is_configurable() -> None:
    require_sandbox_packages("numpy", "pandas")
    code = "def main(probe):\n    import numpy\n    import pandas\n    return {'out': {}}\n"
    final = _run(code, allowed_packages=("numpy",))
    assert isinstance(final, GraphRunFailedEvent)
    assert final.error.startswith("code failed: ModuleNotFoundError: No module named 'pandas'")
    assert "allowed packages (numpy)" in final.error
    # Not even the files are there: the allow-list is the filesystem view, not just a hook.
    listing = (
        "def main(probe):\n    import os\n    return {'out': {'site': os.listdir('/opt/site')}}\n"
    )
    final = _run(listing, allowed_packages=("numpy",))
    assert isinstance(final, GraphRunSucceededEvent)
    assert {name.split("-")[0] for name in final.outputs["out"]["site"]} == {"numpy", "numpy.libs"}
    assert {p.name for p in package_view(("numpy",)).entries} == set(final.outputs["out"]["site"])


def test_the_standard_library_is_always_there() -> None:
    code = """
def main(probe):
    import json, sqlite3, decimal, datetime, re, math, hashlib, statistics, collections
    return {"out": {"ok": sqlite3.connect(":memory:").execute("select 1").fetchone()[0]}}
"""
    assert _run(code, allowed_packages=()) == GraphRunSucceededEvent(outputs={"out": {"ok": 1}})


def test_status_without_bubblewrap_says_why() -> None:
    status = sandbox_status("bubblewrap", bwrap="/nonexistent/bwrap")
    assert not status.ok
    assert status.reason == "the bubblewrap executable '/nonexistent/bwrap' is missing"
    assert sandbox_status("unsafe-local").ok


def test_unsafe_local_mode_keeps_the_import_allow_list() -> None:
    code = "def main(probe):\n    import relay\n    return {'out': {}}\n"
    final = _run(code, mode="unsafe-local")
    assert isinstance(final, GraphRunFailedEvent)
    assert final.error.startswith("code failed: ModuleNotFoundError: No module named 'relay'")


def test_the_packages_real_exports_import_do_their_work() -> None:
    """jieba, matplotlib and sympy, as exports use them: segment Chinese text, draw a chart
    (written to the private tmpfs), solve an equation."""
    require_sandbox_packages("jieba", "matplotlib", "sympy")
    code = """
def main(probe):
    import io
    import jieba
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import sympy
    words = jieba.lcut("我来到北京清华大学")
    figure, axis = plt.subplots()
    axis.plot([1, 2, 3], [2, 4, 8])
    png = io.BytesIO()
    figure.savefig(png, format="png")
    x = sympy.symbols("x")
    return {"out": {"words": words, "png": png.getvalue()[:8].hex(),
                    "roots": [str(r) for r in sympy.solve(x**2 - 4, x)]}}
"""
    final = _run(code, time_limit=60.0)
    assert isinstance(final, GraphRunSucceededEvent), final
    out = final.outputs["out"]
    assert out["words"] == ["我", "来到", "北京", "清华大学"]
    assert out["png"] == "89504e470d0a1a0a"  # the PNG signature
    assert out["roots"] == ["-2", "2"]
