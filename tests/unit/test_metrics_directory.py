"""``enable_multiprocess``: a fresh directory per run, leftovers of dead runs removed, the
directories of running processes (and of other roles) left alone; values go to files there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import os, sys
from pathlib import Path
from relay.adapters.prometheus import Metrics, enable_multiprocess, process_exited
directory = enable_multiprocess(Path(sys.argv[1]), "api")
metrics = Metrics()
metrics.http_requests.labels("GET", "/x", "200").inc(3)
metrics.sse_open.labels("workflow").inc()
print(directory.name)
print(metrics.render().decode())
process_exited(os.getpid())
print(sorted(p.name.split("_")[0] for p in directory.iterdir()))
"""


def test_each_run_gets_its_own_directory_and_dead_runs_are_removed(tmp_path: Path) -> None:
    root = tmp_path / "metrics"
    dead, alive, other = root / "api-999999999", root / f"api-{os.getpid()}", root / "worker-1"
    for directory in (dead, alive, other):
        directory.mkdir(parents=True)
        (directory / "counter_1.db").write_bytes(b"")
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    name, *rest = done.stdout.splitlines()
    text = "\n".join(rest)
    assert name.startswith("api-")
    assert name != alive.name
    assert not dead.exists()
    assert alive.exists()
    assert other.exists()
    assert 'relay_http_requests_total{endpoint="/x",method="GET",status="200"} 3.0' in text
    assert 'relay_sse_streams_open{kind="workflow"} 1.0' in text
    # The process said it exited: its live gauge file is gone, its counters stay.
    assert rest[-1] == "['counter']"
