"""The README quick start, end to end, against a real ``relay up`` in a fresh var directory.

Token (generated and printed once), tenant, API key, import of every real Dify export, a run,
a refused run, the lists of runs and tasks, and the docs page: what a newcomer does first.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
EXPORTS = sorted((ROOT / "tests" / "fixtures" / "dify_dsl").glob("*.yml"))
README = (ROOT / "README.md").read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _banner(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("Press Ctrl-C to stop."):
            break
    return "".join(lines)


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def test_the_readme_quick_start_works_from_a_fresh_var_directory(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update(RELAY_API_PORT=str(port), RELAY_LOG_LEVEL="WARNING", RELAY_CELERY_CONCURRENCY="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "relay", "up"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        banner = _banner(proc)
        base = f"http://127.0.0.1:{port}"
        assert f"{base}/docs" in banner, banner
        # 0. The admin token: generated into var/admin-token (0600) and printed once.
        token_file = tmp_path / "var" / "admin-token"
        token = token_file.read_text().strip()
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert token in banner
        assert "Next steps:" in banner
        for step in ("/v1/tenants", "/v1/apps/import?publish=true", "/v1/workflows/run"):
            assert step in banner
            assert step in README, f"the README quick start walks {step}"

        with httpx.Client(base_url=base, timeout=30) as http:
            admin = {"Authorization": f"Bearer {token}"}
            # 1. A tenant and an API key.
            tenant = http.post(
                "/v1/tenants", headers=admin, json={"name": "acme", "plan": "sandbox"}
            )
            assert tenant.status_code == 201, tenant.text
            key = http.post(
                f"/v1/tenants/{tenant.json()['id']}/api-keys", headers=admin,
                json={"name": "first key"},
            )  # fmt: skip
            assert key.status_code == 201, key.text
            auth = {"Authorization": f"Bearer {key.json()['key']}"}

            # 2. Import every real export, published.
            apps: dict[str, dict[str, Any]] = {}
            for path in EXPORTS:
                imported = http.post(
                    "/v1/apps/import?publish=true",
                    headers={**auth, "Content-Type": "application/x-yaml"},
                    content=path.read_bytes(),
                )
                assert imported.status_code == 201, (path.name, imported.text)
                apps[path.name] = imported.json()
                assert imported.json()["published"] is True
            assert len(apps) == 12
            slug = apps["seo-slug-generator.yml"]["app"]["id"]

            # 3. Run it (blocking), and see a bad run refused up front.
            body = {"app_id": slug, "user": "me", "response_mode": "blocking",
                    "inputs": {"title": "Hello relay"}}  # fmt: skip
            run = http.post("/v1/workflows/run", headers=auth, json=body)
            assert run.status_code == 200, run.text
            assert run.json()["data"]["status"] == "succeeded", run.json()
            assert run.json()["data"]["outputs"]
            refused = http.post("/v1/workflows/run", headers=auth, json={**body, "inputs": {}})
            assert (refused.status_code, refused.json()["code"]) == (400, "invalid_inputs")

            # 4. The lists.
            runs = http.get(f"/v1/workflows/runs?app_id={slug}", headers=auth).json()
            assert [r["status"] for r in runs["data"]] == ["succeeded"]

            def recorded() -> Any:
                page = http.get(
                    "/v1/tasks?name=relay.workflow.run&status=SUCCESS", headers=auth
                ).json()
                return page["data"]

            wait_until(recorded, timeout=20, what="the run's task record says SUCCESS")
            assert http.get("/docs").status_code == 200

        # A second relay up on the same var directory, or on the same port, refuses at once.
        other_port = {**env, "RELAY_API_PORT": str(_free_port())}
        second = subprocess.run(
            [sys.executable, "-m", "relay", "up"],
            cwd=tmp_path, env=other_port, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert second.returncode == 1
        assert "another relay up (pid" in second.stderr, second.stderr
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        third = subprocess.run(
            [sys.executable, "-m", "relay", "up"],
            cwd=elsewhere, env=env, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert third.returncode == 1
        assert f"port {port} on 127.0.0.1 is in use" in third.stderr, third.stderr
        assert not (elsewhere / "var" / "redis").exists(), "refused before starting anything"
    finally:
        _stop(proc)
    assert proc.returncode == 0
    assert proc.stdout is not None
    rest = proc.stdout.read()
    assert "Traceback" not in rest, rest
    # The token is printed once, in the banner, never in the logs after it.
    assert not re.search(re.escape(token), rest)
