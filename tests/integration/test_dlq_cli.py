"""``relay dlq``: list, show, replay (one or all, with progress) and purge dead letters."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from celery.result import AsyncResult
from click.testing import CliRunner, Result
from sqlalchemy import update

from relay.cli import main
from relay.config import Settings
from relay.models import DeadLetter, utcnow
from relay.runtime import Runtime
from relay.services.dead_letter_service import DeadLetterService
from tests.conftest import run_worker

TRACEBACK = """Traceback (most recent call last):
  File "/srv/relay/tasks/mail.py", line 120, in send
    smtp.sendmail(sender, [to], message.as_string())
smtplib.SMTPRecipientsRefused: {'nobody@example.invalid': (550, b'no such user')}
"""

ACME = str(uuid.uuid4())
GLOBEX = str(uuid.uuid4())


@pytest.fixture
def cli(settings: Settings, runtime: Runtime) -> Any:
    """Run ``relay ...`` in-process against the test's database and Redis."""
    env = {
        "RELAY_DATABASE_URL": settings.database_url,
        "RELAY_REDIS_URL": settings.redis.url or "",
        "RELAY_VAR_DIR": str(settings.var_dir),
        "RELAY_LOG_JSON_FORMAT": "false",
        "RELAY_LOG_LEVEL": "WARNING",
    }
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(main, ["dlq", *args], env=env, input=input)

    return invoke


def table_ids(output: str) -> list[str]:
    """The first cell of each body row of a table printed by the CLI."""
    return [line.split("│")[1].strip() for line in output.splitlines() if line.startswith("│")]


def bury(
    runtime: Runtime,
    tenant_id: str | None,
    task_name: str = "relay.ping",
    args: list[Any] | None = None,
    *,
    reason: str = "exhausted",
    error: str = "ConnectionError: broker reset the connection",
) -> str:
    task_id = str(uuid.uuid4())
    return runtime.lifecycle.dead_letters.bury(
        task_id=task_id,
        task_name=task_name,
        queue="monitor",
        tenant_id=tenant_id,
        args=args if args is not None else ["hello"],
        kwargs={},
        headers={"idempotency_key": f"outbox:{task_id}"},
        reason=reason,
        error=error,
        traceback=TRACEBACK,
        attempts=3 if reason == "exhausted" else 1,
    )


def run_tasks(runtime: Runtime, task_ids: list[str]) -> list[Any]:
    """Start a real worker and wait for each task's result."""
    with run_worker(runtime, queues=["monitor"]):
        return [AsyncResult(t, app=runtime.celery).get(timeout=30) for t in task_ids]


def test_list_filters_by_tenant_task_and_limit(cli: Any, runtime: Runtime) -> None:
    ping = bury(runtime, ACME)
    mail = bury(runtime, ACME, "relay.canary", ["x"], reason="fatal", error="SMTP 550")
    other = bury(runtime, GLOBEX)

    listed = cli("list")
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.splitlines()[1].split("┃")[1].strip() == "id", "a header row"
    assert table_ids(listed.stdout) == [other, mail, ping], "newest first"
    assert "3 dead letter(s)" in listed.stderr
    (mail_row,) = [line for line in listed.stdout.splitlines() if mail in line]
    assert ACME in mail_row
    assert "fatal" in mail_row
    assert "SMTP 550" in mail_row

    assert _ids(cli("list", "--tenant", ACME)) == [mail, ping]
    assert _ids(cli("list", "--task", "relay.canary")) == [mail]
    assert _ids(cli("list", "--limit", "1")) == [other]
    as_json = [json.loads(line) for line in cli("list", "--json").stdout.splitlines()]
    assert as_json[0]["id"] == other
    assert as_json[0]["kwargs"] == {}
    assert cli("list", "--limit", "0").exit_code == 2


def _ids(result: Result) -> list[str]:
    assert result.exit_code == 0, result.output
    return table_ids(result.stdout)


def test_show_prints_the_letter_with_its_traceback(cli: Any, runtime: Runtime) -> None:
    letter_id = bury(runtime, ACME, args=["payload"])
    shown = cli("show", letter_id)
    assert shown.exit_code == 0, shown.output
    assert f"id                {letter_id}" in shown.stdout
    assert 'args              ["payload"]' in shown.stdout
    assert "smtplib.SMTPRecipientsRefused" in shown.stdout
    assert json.loads(cli("show", letter_id, "--json").stdout)["traceback"] == TRACEBACK

    unknown = cli("show", "no-such-letter")
    assert unknown.exit_code == 1
    assert "no dead letter no-such-letter" in unknown.output


def test_replay_one_runs_it_and_refuses_a_second_replay(cli: Any, runtime: Runtime) -> None:
    letter_id = bury(runtime, ACME, args=["from the CLI"])
    replayed = cli("replay", letter_id)
    assert replayed.exit_code == 0, replayed.output
    task_id = replayed.stdout.split()[-1]
    assert run_tasks(runtime, [task_id])[0]["pong"] == "from the CLI"

    again = cli("replay", letter_id)
    assert again.exit_code == 1
    assert "already replayed" in again.output
    assert task_id in again.output
    assert cli("replay", "no-such-letter").exit_code == 1
    assert "no dead letter" in cli("replay", "no-such-letter").output
    assert cli("replay").exit_code == 2, "an id or --all is required"
    assert cli("replay", letter_id, "--all").exit_code == 2


def test_replay_all_of_a_tenant_with_progress(cli: Any, runtime: Runtime) -> None:
    mine = [bury(runtime, ACME, args=[f"bulk {i}"]) for i in range(4)]
    theirs = bury(runtime, GLOBEX)
    DeadLetterService(runtime).replay(mine[0])  # replayed before: not pending any more

    bulk = cli("replay", "--all", "--tenant", ACME)
    assert bulk.exit_code == 0, bulk.output
    assert "replayed 3, conflicts 0" in bulk.stdout
    assert "3/3" in bulk.stderr, "the progress bar counts the letters"

    service = DeadLetterService(runtime)
    letters = {letter.id: letter for letter in service.list_letters(limit=100)}
    assert all(letters[i].replayed_task_id for i in mine)
    assert letters[theirs].replayed_at is None, "another tenant's letter is left alone"
    results = run_tasks(runtime, [letters[i].replayed_task_id or "" for i in mine[1:]])
    assert sorted(r["pong"] for r in results) == ["bulk 1", "bulk 2", "bulk 3"]

    assert "no dead letters to replay" in cli("replay", "--all", "--tenant", ACME).stdout


def test_bulk_replay_counts_letters_replayed_meanwhile_as_conflicts(runtime: Runtime) -> None:
    first, second = bury(runtime, ACME), bury(runtime, ACME)
    service = DeadLetterService(runtime)
    pending = service.pending_ids(ACME)
    service.replay(first)  # another operator got there first
    seen: list[str] = []
    outcome = service.replay_many([*pending, "gone"], ACME, progress=seen.append)
    assert outcome.conflicts == [first]
    assert list(outcome.replayed) == [second]
    assert outcome.failed == {"gone": "dead letter not found"}
    assert seen == [first, second, "gone"]


def test_purge_asks_and_honours_age_and_tenant(cli: Any, runtime: Runtime) -> None:
    old_acme, new_acme, old_globex = bury(runtime, ACME), bury(runtime, ACME), bury(runtime, GLOBEX)
    with runtime.db.transaction() as session:
        session.execute(
            update(DeadLetter)
            .where(DeadLetter.id.in_([old_acme, old_globex]))
            .values(created_at=utcnow() - timedelta(days=10))
        )

    declined = cli("purge", "--older-than", "7", input="n\n")
    assert declined.exit_code == 1
    assert runtime.lifecycle.dead_letters.count() == 3, "nothing deleted without confirmation"

    scoped = cli("purge", "--older-than", "7", "--tenant", ACME, "--yes")
    assert scoped.exit_code == 0, scoped.output
    assert "purged 1 dead letter(s) older than 7 day(s) of tenant" in scoped.stdout
    remaining = {v.id for v in runtime.lifecycle.dead_letters.list_letters()}
    assert remaining == {new_acme, old_globex}

    everything = cli("purge", input="y\n")
    assert everything.exit_code == 0, everything.output
    assert "purged 2 dead letter(s)" in everything.stdout
    assert runtime.lifecycle.dead_letters.count() == 0
    assert cli("purge", "--older-than", "-1", "--yes").exit_code == 2
