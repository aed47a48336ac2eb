"""``relay apps import/export/list``, ``relay runs`` and ``relay tasks`` through the services."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from relay.cli import main
from relay.config import Settings
from relay.runtime import Runtime
from relay.services.tenant_service import TenantService

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dify_dsl"


@pytest.fixture
def cli(settings: Settings, runtime: Runtime) -> Any:
    env = {
        "RELAY_DATABASE_URL": settings.database_url,
        "RELAY_REDIS_URL": settings.redis.url or "",
        "RELAY_VAR_DIR": str(settings.var_dir),
        "RELAY_LOG_JSON_FORMAT": "false",
        "RELAY_LOG_LEVEL": "WARNING",
    }

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(main, list(args), env=env)

    return invoke


def test_import_prints_the_report_and_the_app_lists_and_exports(
    cli: Any, runtime: Runtime, tmp_path: Path
) -> None:
    tenant = TenantService(runtime).create("acme", "team").id
    path = FIXTURES / "knowledge-base-chat.yml"
    result = cli("apps", "import", str(path), "--tenant", tenant)
    assert result.exit_code == 0, result.output
    assert "imported " in result.output
    assert "(advanced-chat, draft saved, completed-with-warnings)" in result.output
    assert "unknown_dataset" in result.output
    assert "dataset_ids[0]" in result.output
    assert "┃ code" in result.output, "the attention list is a table with a header"

    as_json = cli("apps", "import", str(FIXTURES / "json-repair.yml"), "--tenant", tenant,
                  "--publish", "--json")  # fmt: skip
    report = json.loads(as_json.output)
    assert report["published"] is True

    listed = cli("apps", "list", "--tenant", tenant)
    assert listed.exit_code == 0
    assert "published" in listed.output.splitlines()[1]
    assert report["app"]["id"] in listed.output

    out = tmp_path / "export.yml"
    exported = cli("apps", "export", report["app"]["id"], "--tenant", tenant, "-o", str(out))
    assert exported.exit_code == 0, exported.output
    original = yaml.safe_load((FIXTURES / "json-repair.yml").read_text())
    assert yaml.safe_load(out.read_text())["workflow"]["graph"] == original["workflow"]["graph"]


def test_errors_are_one_clear_line(cli: Any, runtime: Runtime, tmp_path: Path) -> None:
    tenant = TenantService(runtime).create("acme", "team").id
    broken = tmp_path / "broken.yml"
    broken.write_text("app: [unclosed\n")
    result = cli("apps", "import", str(broken), "--tenant", tenant)
    assert result.exit_code == 1
    assert result.output.startswith("Error: the export is not valid YAML (line")
    assert "Traceback" not in result.output
    assert cli("apps", "export", "nope", "--tenant", tenant).output == "Error: app not found\n"
    unknown = cli("apps", "import", str(FIXTURES / "json-repair.yml"), "--tenant", "nope")
    assert unknown.output == "Error: no tenant nope\n"


def test_runs_and_tasks_print_tables(cli: Any, runtime: Runtime) -> None:
    tenant = TenantService(runtime).create("acme", "team").id
    runs = cli("runs", "--tenant", tenant)
    assert runs.exit_code == 0, runs.output
    assert runs.output.splitlines()[1].split("┃")[1].strip() == "run"
    assert "0 of 0 run(s)" in runs.output
    tasks = cli("tasks", "--status", "SUCCESS")
    assert tasks.exit_code == 0, tasks.output
    assert "attempts" in tasks.output
    refused = cli("tasks", "--status", "DONE")
    assert refused.exit_code == 2
    assert "'DONE' is not one of" in refused.output


def test_an_unexpected_error_is_one_line_without_secrets(settings: Settings) -> None:
    env = {
        "RELAY_DATABASE_URL": "postgresql+psycopg://relay:s3cret@127.0.0.1:1/relay",
        "RELAY_REDIS_URL": settings.redis.url or "",
        "RELAY_VAR_DIR": str(settings.var_dir),
        "RELAY_LOG_LEVEL": "WARNING",
    }
    result = CliRunner().invoke(main, ["dlq", "list"], env=env)
    assert result.exit_code == 1
    (line,) = result.output.splitlines()
    assert line.startswith("Error: OperationalError: ")
    assert "s3cret" not in line
    assert "RELAY_DEBUG=1" in line


def test_many_files_import_with_one_row_each(cli: Any, runtime: Runtime, tmp_path: Path) -> None:
    tenant = TenantService(runtime).create("acme", "team").id
    broken = tmp_path / "broken.yml"
    broken.write_text("kind: app\napp: {name: x, mode: workflow}\n")
    files = [str(path) for path in sorted(FIXTURES.glob("*.yml"))]
    result = cli("apps", "import", *files, str(broken), "--tenant", tenant, "--publish")
    assert result.exit_code == 1
    rows = [line for line in result.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == len(files) + 1
    assert sum("completed" in row for row in rows) == len(files)
    (failed,) = [row for row in rows if "broken.yml" in row]
    assert "a workflow export needs a 'workflow' section" in failed
    assert "1 of 13 file(s) could not be imported" in result.output
