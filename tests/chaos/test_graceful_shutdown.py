"""R8: SIGTERM during work, to a worker's process group and to an API process, with workflow runs
and SSE clients open.

Real processes: two API servers (``relay api``, gunicorn + gevent) and a worker (``relay
worker``) that runs keyed slow tasks and workflow runs; a second worker starts just before the
first is stopped. The first worker's whole process group gets SIGTERM (what systemd sends): its
short tasks finish, the task that outlasts the grace period is killed and handed back, its runs
pause at their next node boundary and continue on the second worker from their checkpoints.
Then the API process serving every SSE client gets SIGTERM: each stream ends at an event
boundary with a ``retry:`` hint and the client resumes on the other API process with
``Last-Event-ID``. Counted: effects lost and applied twice (0 and 0), events missed or repeated
per client (none), nodes run twice (none), and the API answers during the fault (no 500).

The short version runs in ``make test``; the full one, and a short one that signals the
worker's main process alone (it passes SIGTERM on to its pool), with ``make chaos``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from relay.api.workflows import SHUTDOWN_RETRY_MS
from relay.config import Settings
from relay.models import TaskRecord, WorkflowRun
from relay.runtime import Runtime
from relay.streaming.channels import START, stream_key
from relay.streaming.sse import SSEParser
from tests.chaos.drills import processed
from tests.integration.streaming.support import streaming_stack, workflow_graph
from tests.integration.test_api_support import TenantCredentials
from tests.outages import stop_process
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
QUEUES = "monitor,workflow_team"
REPLY = " ".join(f"w{i}" for i in range(30))
TERMINAL = {"workflow_succeeded", "workflow_failed", "workflow_partial_succeeded", "error", "stop"}
GRACE = 4.0
LONG_TASK = GRACE + 30.0  # never finishes within the grace period on the stopped worker


# --- processes -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _env(runtime: Runtime) -> dict[str, str]:
    settings = runtime.settings
    return dict(
        os.environ,
        RELAY_DATABASE_URL=settings.database_url,
        RELAY_REDIS_URL=str(settings.redis.url),
        RELAY_VAR_DIR=str(settings.var_dir),
        RELAY_LOG_LEVEL="WARNING",
        RELAY_CELERY_HEARTBEAT_INTERVAL="0.5",
        RELAY_CELERY_SHUTDOWN_GRACE=str(GRACE),
        RELAY_STREAMING_HEARTBEAT_INTERVAL="0.2",
        RELAY_STREAMING_STOP_POLL_INTERVAL="0.05",
        RELAY_STREAMING_PING_INTERVAL="2",
        RELAY_WORKFLOW_LLM_TOKEN_DELAY="0.04",
        RELAY_WORKFLOW_LLM_REPLY=REPLY,
        PYTHONPATH=str(REPO),
    )


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "relay", *argv],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as under systemd
        )


def _worker(env: dict[str, str], name: str, log: Path, concurrency: int) -> subprocess.Popen[bytes]:
    argv = ["worker", "-Q", QUEUES, "-c", str(concurrency), "-n", name,
            "--include", "tests.chaos.slow"]  # fmt: skip
    return _spawn(argv, env, log)


def _api(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    return _spawn(["api"], dict(env, RELAY_API_PORT=str(port), RELAY_API_WORKERS="1"), log)


def _live(url: str) -> bool:
    try:
        return httpx.get(url + "/health/live", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# --- an SSE client that follows its run across API processes ------------------------------------


class RunClient(threading.Thread):
    """Starts a run on the first API process and reads its stream to the end, reconnecting to
    the next process with ``Last-Event-ID`` whenever a stream ends before the run does."""

    def __init__(self, urls: list[str], tenant: TenantCredentials, app_id: str, n: int) -> None:
        super().__init__(name=f"r8-client-{n}", daemon=True)
        self.urls = urls
        self.tenant = tenant
        self.app_id = app_id
        self.n = n
        self.run_id = ""
        self.events: list[tuple[str, str, str]] = []  # (id, event, data), pings left out
        self.connections = 0
        self.hinted = 0  # streams that ended with the shutdown's retry hint
        self.error: str | None = None

    @property
    def done(self) -> bool:
        return bool(self.events) and self.events[-1][1] in TERMINAL

    def run(self) -> None:
        try:
            self._follow()
        except Exception as exc:  # reported by the test
            self.error = f"{type(exc).__name__}: {exc}"

    def _follow(self) -> None:
        deadline = time.monotonic() + 120
        at = 0
        with httpx.Client(timeout=30, headers=self.tenant.headers) as client:
            while not self.done and time.monotonic() < deadline:
                url = self.urls[at % len(self.urls)]
                try:
                    self._read(client, url)
                except httpx.TransportError:
                    at += 1  # that process is gone: the next one
                    time.sleep(0.1)
                    continue
                if not self.done:
                    at += 1  # ended early: resume elsewhere, as a load balancer would send it

    def _read(self, client: httpx.Client, url: str) -> None:
        headers = {"Accept": "text/event-stream"}
        if self.run_id:
            request = client.build_request(
                "GET",
                f"{url}/v1/workflows/runs/{self.run_id}/events",
                params={"user": f"user{self.n}"},
                headers={**headers, "Last-Event-ID": self.events[-1][0]},
            )
        else:
            body = {
                "app_id": self.app_id,
                "inputs": {"topic": f"t{self.n}"},
                "user": f"user{self.n}",
            }
            request = client.build_request(
                "POST", f"{url}/v1/workflows/run", json=body, headers=headers
            )
        response = client.send(request, stream=True)
        try:
            if response.status_code != 200:
                raise AssertionError(f"{response.status_code}: {response.read()!r}")
            self.connections += 1
            self.run_id = response.headers["X-Relay-Run-Id"]
            parser = SSEParser()
            for text in response.iter_text():
                for message in parser.feed(text):
                    if message.has_id and message.id is not None:
                        self.events.append((message.id, message.event, message.data))
            if not self.done and parser.retry == SHUTDOWN_RETRY_MS:
                self.hinted += 1
        finally:
            response.close()


class Prober(threading.Thread):
    """``GET /health/live`` on every API process while the fault lasts; counts the answers."""

    def __init__(self, urls: list[str]) -> None:
        super().__init__(name="r8-prober", daemon=True)
        self.urls = urls
        self.answers: Counter[str] = Counter()
        self.stopping = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=2) as client:
            while not self.stopping.wait(0.2):
                for url in self.urls:
                    try:
                        self.answers[str(client.get(url + "/health/live").status_code)] += 1
                    except httpx.TransportError:
                        self.answers["refused"] += 1


# --- the drill -----------------------------------------------------------------------------------


def _exit_times(
    processes: dict[str, subprocess.Popen[bytes]], since: float, timeout: float
) -> dict[str, tuple[int | None, float]]:
    """Each process's exit code and the seconds it took to exit after ``since``."""
    found: dict[str, tuple[int | None, float]] = {}
    deadline = since + timeout
    while len(found) < len(processes) and time.monotonic() < deadline:
        for name, process in processes.items():
            if name not in found and process.poll() is not None:
                found[name] = (process.returncode, time.monotonic() - since)
        time.sleep(0.05)
    for name in processes:
        found.setdefault(name, (None, timeout))
    return found


def _journal(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def _enqueue(runtime: Runtime, count: int, seconds: float, journal: Path) -> None:
    with runtime.db.transaction() as session:
        for n in range(count):
            runtime.outbox.enqueue(
                session,
                "tests.chaos.slow",
                args=[f"r8:{n}", LONG_TASK if n == 0 else seconds, "doomed", str(journal)],
                idempotency_key=f"r8:{n}",
                queue="monitor",
            )


def _node_runs(events: list[tuple[str, str, str]]) -> Counter[str]:
    return Counter(json.loads(d)["node_id"] for _, e, d in events if e == "node_started")


def _continued_runs(runtime: Runtime) -> list[TaskRecord]:
    runtime.lifecycle.flush()
    with runtime.db.session() as session:
        query = select(TaskRecord).where(
            TaskRecord.name == "relay.workflow.run", TaskRecord.id.like("%:next")
        )
        return list(session.scalars(query))


def _drill(
    settings: Settings,
    tmp_path: Path,
    tasks: int,
    runs: int,
    seconds: float,
    *,
    whole_group: bool = True,
) -> None:
    journal = tmp_path / "journal.txt"
    journal.touch()
    logs = tmp_path
    with streaming_stack(settings, worker=False, worker_lost_after=30.0) as stack:
        runtime = stack.runtime
        tenant = stack.api.create_tenant("r8", plan="team")
        app_id = stack.publish_app(workflow_graph(llm_nodes=4), tenant=tenant)
        env = _env(runtime)
        ports = [_free_port(), _free_port()]
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        apis = [_api(env, port, logs / f"api{i}.log") for i, port in enumerate(ports)]
        doomed = _worker(env, "doomed@r8", logs / "doomed.log", concurrency=runs + 2)
        rescuer: subprocess.Popen[bytes] | None = None
        prober = Prober(urls)
        try:
            wait_until(lambda: all(_live(u) for u in urls), timeout=60, what="both API processes")
            clients = [RunClient(urls, tenant, app_id, n) for n in range(runs)]
            for client in clients:
                client.start()
            _enqueue(runtime, tasks, seconds, journal)

            def busy() -> bool:
                lines = _journal(journal)
                started = {w[1] for w in lines if w[0] == "started" and w[2].startswith("doomed")}
                nodes = [c for c in clients if "node_succeeded" in {e for _, e, _ in c.events}]
                return "r8:0" in started and len(nodes) == runs

            wait_until(busy, timeout=60, what="runs and tasks under way on the first worker")
            rescuer = _worker(env, "rescuer@r8", logs / "rescuer.log", concurrency=runs + 2)
            prober.start()
            fault = time.monotonic()
            if whole_group:
                os.killpg(doomed.pid, signal.SIGTERM)  # the whole group, as systemd does
            else:
                doomed.send_signal(signal.SIGTERM)  # the main process alone passes it on
            os.killpg(apis[0].pid, signal.SIGTERM)
            exits = _exit_times({"api": apis[0], "worker": doomed}, fault, GRACE + 20)
            api_code, api_stopped_in = exits["api"]
            worker_code, stopped_in = exits["worker"]
            for client in clients:
                client.join(120)
            # No safety net runs here (no reaper, no outbox relay): what the stopped worker
            # held must come back by the shutdown path alone.
            wait_until(lambda: processed(runtime, "r8") >= tasks, timeout=120, what="every effect")
            recovery = time.monotonic() - fault
            prober.stopping.set()
            prober.join(5)
        finally:
            prober.stopping.set()
            for process in [doomed, rescuer, *apis]:
                if process is not None:
                    stop_process(process, timeout=GRACE + 10)
        streams = {
            c.run_id: runtime.redis.xrange(stream_key(c.run_id), START, "+") for c in clients
        }
        with runtime.db.session() as session:
            statuses = {
                c.run_id: session.get(WorkflowRun, c.run_id).status  # type: ignore[union-attr]
                for c in clients
            }
        continued = _continued_runs(runtime)

    lines = _journal(journal)
    applied = Counter(w[1] for w in lines if w[0] == "applied")
    duplicated = sum(n - 1 for n in applied.values() if n > 1)
    effects = processed(runtime, "r8")
    answers = prober.answers
    hinted = sum(c.hinted for c in clients)
    probed = ", ".join(f"{k}: {v}" for k, v in sorted(answers.items()))
    line = (
        f"| R8 SIGTERM to a worker's {'group' if whole_group else 'main process'} and to an "
        f"API process, {runs} runs streaming | {tasks} "
        f"| {tasks - effects} | {duplicated} | {recovery:.1f} s | {probed} |"
    )
    print("\n" + line)
    print(
        f"R8: duplicated effects {duplicated}; worker stopped in {stopped_in:.1f}s (exit "
        f"{worker_code}), API in {api_stopped_in:.1f}s (exit {api_code}); streams ended with "
        f"a retry hint {hinted}/{runs}; "
        f"runs continued elsewhere {len(continued)}; API answers {dict(answers)}"
    )
    assert line
    assert [c.error for c in clients] == [None] * runs
    assert effects == tasks  # nothing lost
    assert duplicated == 0  # nothing applied twice
    assert worker_code == 0
    assert api_code == 0
    assert "500" not in answers
    for client in clients:
        ids = [entry_id for entry_id, _ in streams[client.run_id]]
        assert [i for i, _, _ in client.events] == ids  # every event once, in order, no gap
        assert client.events[-1][1] == "workflow_succeeded"
        assert statuses[client.run_id] == "succeeded"
        assert set(_node_runs(client.events).values()) == {1}  # no node ran twice
        assert client.connections >= 2  # it did resume on the other API process
    assert hinted == runs  # every stream of the stopped API ended cleanly, with the hint
    # The runs paused on the stopped worker and continued on the other one.
    assert len(continued) == runs
    assert all(r.worker.startswith("rescuer") and r.status == "SUCCESS" for r in continued)
    # The task that outlasted the grace period was handed back and ran on the other worker.
    assert [w[2] for w in lines if w[0] == "applied" and w[1] == "r8:0"] == ["rescuer@r8"]


@pytest.mark.timeout(120)
def test_r8_short(settings: Settings, tmp_path: Path) -> None:
    _drill(settings, tmp_path, tasks=30, runs=3, seconds=0.5)


@pytest.mark.chaos
@pytest.mark.timeout(600)
def test_r8_full(settings: Settings, tmp_path: Path) -> None:
    _drill(settings, tmp_path, tasks=400, runs=8, seconds=0.5)


@pytest.mark.chaos
@pytest.mark.timeout(300)
def test_r8_main_process_only(settings: Settings, tmp_path: Path) -> None:
    _drill(settings, tmp_path, tasks=30, runs=3, seconds=0.5, whole_group=False)
