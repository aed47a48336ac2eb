"""``relay`` command line: up, api, worker, beat, migrate, queues, dlq, config, tenants.

Each command imports what it runs inside its own function: ``relay --help`` and the small
commands start without loading Celery, the API and the workflow engine (start-up speed, not
cycles: the layers contract holds for this module like any other).
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from relay import catalog
from relay.config import Settings, describe_settings, load_settings
from relay.errors import RelayError


def _settings() -> Settings:
    try:
        return load_settings()
    except RelayError as exc:
        raise click.ClickException(exc.message) from None


@click.group()
def main() -> None:
    """relay: the event and task backbone of a multi-tenant AI application platform."""


@main.command()
@click.option(
    "--startup-timeout", default=60.0, show_default=True, help="Seconds to become healthy"
)
def up(startup_timeout: float) -> None:
    """Run the whole stack (Redis if needed, migrations, worker, beat, API) until Ctrl-C."""
    from relay.supervisor import Supervisor

    sys.exit(Supervisor(_settings(), startup_timeout=startup_timeout).run())


@main.command()
def api() -> None:
    """Serve the HTTP API (gunicorn + gevent; ``relay.__main__`` has patched the stdlib)."""
    from relay.server import ApiServer

    ApiServer(_settings()).run()


@main.command()
@click.option("--queues", "-Q", default="all", show_default=True, help="Comma-separated, or 'all'")
@click.option("--concurrency", "-c", type=int, default=None, help="Worker processes")
@click.option("--pool", default="prefork", show_default=True)
@click.option(
    "--hostname",
    "-n",
    default=None,
    help="Worker node name (default relay-<queues>@<host>; set it for a 2nd worker on one host)",
)
@click.option(
    "--include", "-I", multiple=True, help="Extra module to import (your own tasks, probes)"
)
def worker(
    queues: str, concurrency: int | None, pool: str, hostname: str | None, include: tuple[str, ...]
) -> None:
    """Run a Celery worker on the given queues."""
    from relay.composition import create_runtime
    from relay.worker.hooks import install_worker_hooks
    from relay.worker.names import node_name

    settings = _settings()
    names = catalog.queue_names() if queues == "all" else [q.strip() for q in queues.split(",")]
    unknown = sorted(set(names) - set(catalog.queue_names()))
    if unknown:
        raise click.BadParameter(f"unknown queue(s): {', '.join(unknown)}", param_hint="--queues")
    runtime = create_runtime(settings)
    install_worker_hooks(runtime.celery, runtime.db, runtime.lifecycle)
    argv = [
        "worker",
        "--queues", ",".join(names),
        "--concurrency", str(concurrency or settings.celery.concurrency),
        "--pool", pool,
        # Stable across restarts (host + queue set), so Celery's tools see one worker, not many.
        "--hostname", hostname or node_name(names, socket.gethostname()),
        "--loglevel", settings.log.level,
        "--without-mingle",
        "--without-gossip",
    ]  # fmt: skip
    if include:
        argv += ["--include", ",".join(include)]
    try:
        runtime.celery.worker_main(argv)
    finally:
        runtime.close()  # flush what the main process buffered (records, stats)


@main.command()
def beat() -> None:
    """Run the beat scheduler (celery-redbeat: a second beat waits for the lock)."""
    from relay.composition import create_runtime

    runtime = create_runtime(_settings())
    try:
        runtime.celery.start(["beat", "--loglevel", runtime.settings.log.level])
    finally:
        runtime.close()


@main.command()
@click.option("--revision", default="head", show_default=True)
@click.option("--down", is_flag=True, help="Downgrade to the revision instead")
def migrate(revision: str, down: bool) -> None:
    """Apply (or revert) database migrations."""
    from relay import migrations

    settings = _settings()
    if down:
        migrations.downgrade(settings.database_url, revision if revision != "head" else "base")
    else:
        migrations.upgrade(settings.database_url, revision)
    click.echo(f"database at revision {migrations.current(settings.database_url) or 'base'}")


@main.group()
def queues() -> None:
    """Inspect queues."""


def _runtime() -> Any:
    from relay.composition import create_runtime

    return create_runtime(_settings())


@queues.command("check")
@click.option("--timeout", default=2.0, show_default=True, help="Seconds to wait for workers")
def queues_check(timeout: float) -> None:
    """Exit non-zero when a routed queue has no live consumer."""
    from relay.services.queue_service import check_consumers

    result = check_consumers(_runtime(), timeout, attempts=3)
    for queue, hosts in result.consumers.items():
        click.echo(f"{queue:24} {', '.join(hosts) if hosts else 'NO CONSUMER'}")
    if result.missing:
        raise click.ClickException(
            "no live consumer for routed queue(s): " + ", ".join(result.missing)
        )
    click.echo("every routed queue has a consumer")


@queues.command("list")
def queues_list() -> None:
    """Every queue with its purpose, routed tasks and current length."""
    from relay.services.queue_service import queue_lengths

    lengths = queue_lengths(_runtime())
    for spec in catalog.QUEUES:
        tasks = [t.name for t in catalog.TASKS if t.queue == spec.name]
        click.echo(
            f"{spec.name:24} {lengths.get(spec.name, 0):>7}  {spec.purpose}  [{', '.join(tasks)}]"
        )


@main.command("config")
@click.option("--markdown", is_flag=True, help="As the Markdown table in the README")
def config_cmd(markdown: bool) -> None:
    """Print every setting: environment variable, default, meaning."""
    if markdown:
        click.echo(settings_table())
        return
    for name, default, description in describe_settings():
        click.echo(f"{name:36} {default:28} {description}")


def settings_table() -> str:
    """The README's configuration table."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    lines += [f"| `{n}` | `{d}` | {text} |" for n, d, text in describe_settings()]
    return "\n".join(lines)


@main.group()
def tenants() -> None:
    """Manage tenants and their API keys (the same services as the admin API)."""


@tenants.command("create")
@click.option("--name", required=True, help="Tenant name")
@click.option(
    "--plan",
    default="sandbox",
    show_default=True,
    help="sandbox, professional, team or enterprise",
)
@click.option("--key-name", default="default", show_default=True, help="Name of the API key")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text")
def tenants_create(name: str, plan: str, key_name: str, as_json: bool) -> None:
    """Create a tenant and print its id and a fresh API key (shown only this once)."""
    from relay.services.auth_service import AuthService
    from relay.services.tenant_service import TenantService

    runtime = _runtime()
    try:
        tenant = TenantService(runtime).create(name, plan)
        issued = AuthService(runtime).issue_key(tenant.id, key_name)
    except RelayError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        runtime.close()
    if as_json:
        import json

        click.echo(json.dumps({"tenant_id": tenant.id, "plan": tenant.plan, "api_key": issued.key}))
        return
    click.echo(f"tenant_id  {tenant.id}")
    click.echo(f"plan       {tenant.plan}")
    click.echo(f"api_key    {issued.key}")
    click.echo("store the API key now: it cannot be shown again", err=True)


@tenants.command("stats")
@click.option("--queue", default=None, help="Only this queue (default: every fair queue)")
def tenants_stats(queue: str | None) -> None:
    """Each active tenant in the fair scheduler: waiting, running, virtual runtime."""
    from relay.scheduling.metrics import tenant_snapshot

    rows = tenant_snapshot(_runtime().dispatcher.queue, queue)
    click.echo(f"{'queue':24} {'tenant':38} {'weight':>6} {'waiting':>8} {'running':>8} vruntime")
    for row in rows:
        click.echo(
            f"{row.queue:24} {row.tenant:38} {row.weight:>6} {row.waiting:>8} {row.running:>8} "
            f"{row.vruntime:.3f}"
        )
    if not rows:
        click.echo("no tenant has work in the fair scheduler")


@tenants.command("list")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100))
@click.option("--offset", default=0, show_default=True, type=click.IntRange(0))
def tenants_list(limit: int, offset: int) -> None:
    """List tenants, newest first."""
    from relay.services.pagination import PageParams
    from relay.services.tenant_service import TenantService

    runtime = _runtime()
    try:
        page = TenantService(runtime).list_tenants(PageParams(limit=limit, offset=offset))
    finally:
        runtime.close()
    for tenant in page.data:
        created = tenant.created_at.isoformat(timespec="seconds")
        click.echo(f"{tenant.id}  {tenant.plan:12} {tenant.status:8} {created}  {tenant.name}")
    shown = f"{offset + 1}-{offset + len(page.data)}" if page.data else "none"
    click.echo(f"{shown} of {page.total} tenant(s)", err=True)


@main.group()
def dlq() -> None:
    """Dead letters: tasks that failed for good. List, show, replay, purge."""


@contextmanager
def _dead_letter_service() -> Iterator[Any]:
    """The service on a fresh runtime; relay errors become clear CLI errors."""
    from relay.services.dead_letter_service import DeadLetterService

    runtime = _runtime()
    try:
        yield DeadLetterService(runtime)
    except RelayError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        runtime.close()  # also publishes what a replay left in the outbox's batch


@contextmanager
def _naming(letter_id: str) -> Iterator[None]:
    """Say which id was not found (the service's answer is the same for every id)."""
    from relay.errors import NotFound

    try:
        yield
    except NotFound:
        raise click.ClickException(f"no dead letter {letter_id}") from None


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@dlq.command("list")
@click.option("--tenant", default=None, help="Only this tenant's letters")
@click.option("--task", "task_name", default=None, help="Only letters of this task type")
@click.option("--pending", is_flag=True, help="Only letters not replayed yet")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line")
def dlq_list(
    tenant: str | None, task_name: str | None, pending: bool, limit: int, as_json: bool
) -> None:
    """Dead letters, newest first."""
    with _dead_letter_service() as service:
        letters = service.list_letters(
            tenant, task_name=task_name, replayed=False if pending else None, limit=limit
        )
    for letter in letters:
        if as_json:
            click.echo(letter.model_dump_json())
            continue
        created = letter.created_at.isoformat(timespec="seconds")
        replayed = f"replayed as {letter.replayed_task_id}" if letter.replayed_at else "pending"
        click.echo(
            f"{letter.id}  {created}  {letter.task_name:32} {letter.reason:10} "
            f"attempts={letter.attempts}  tenant={letter.tenant_id or '-'}  {replayed}  "
            f"{_short(letter.error, 80)}"
        )
    click.echo(f"{len(letters)} dead letter(s)", err=True)


@dlq.command("show")
@click.argument("letter_id")
@click.option("--json", "as_json", is_flag=True, help="As one JSON object")
def dlq_show(letter_id: str, as_json: bool) -> None:
    """One dead letter with its arguments, headers of failure and traceback."""
    with _dead_letter_service() as service, _naming(letter_id):
        letter = service.get(letter_id)
    if as_json:
        click.echo(letter.model_dump_json())
        return
    import json

    for name, value in letter.model_dump(mode="json", exclude={"traceback"}).items():
        shown = json.dumps(value) if isinstance(value, list | dict) else value
        click.echo(f"{name:17} {shown if shown is not None else '-'}")
    click.echo("traceback:")
    click.echo(letter.traceback or "(none)")


@dlq.command("replay")
@click.argument("letter_id", required=False)
@click.option("--all", "replay_all", is_flag=True, help="Every letter not replayed yet")
@click.option("--tenant", default=None, help="Only this tenant's letters")
def dlq_replay(letter_id: str | None, replay_all: bool, tenant: str | None) -> None:
    """Enqueue a dead letter's task again (fresh attempts, same idempotency key)."""
    if bool(letter_id) == replay_all:
        raise click.UsageError("give either a dead letter ID or --all")
    with _dead_letter_service() as service:
        if letter_id:
            with _naming(letter_id):
                accepted = service.replay(letter_id, tenant)
            click.echo(f"replayed {letter_id} as task {accepted.task_id}")
            return
        ids = service.pending_ids(tenant)
        if not ids:
            click.echo("no dead letters to replay")
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        columns = ("replaying", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=Console(stderr=True)) as bar:
            job = bar.add_task("replay", total=len(ids))
            outcome = service.replay_many(ids, tenant, progress=lambda _: bar.advance(job))
    click.echo(
        f"replayed {len(outcome.replayed)}, conflicts {len(outcome.conflicts)} "
        f"(replayed meanwhile), failed {len(outcome.failed)}"
    )
    for failed_id, error in outcome.failed.items():
        click.echo(f"failed {failed_id}: {error}", err=True)
    if outcome.failed:
        raise click.ClickException(f"{len(outcome.failed)} dead letter(s) could not be replayed")


@dlq.command("purge")
@click.option("--older-than", "older_than", type=click.FloatRange(min=0), default=None, help="Days")
@click.option("--tenant", default=None, help="Only this tenant's letters")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation")
def dlq_purge(older_than: float | None, tenant: str | None, yes: bool) -> None:
    """Delete dead letters (replayed or not) for good."""
    scope = f" older than {older_than:g} day(s)" if older_than is not None else ""
    scope += f" of tenant {tenant}" if tenant else ""
    if not yes:
        click.confirm(f"delete every dead letter{scope}?", abort=True)
    with _dead_letter_service() as service:
        count = service.purge(older_than_days=older_than, tenant_id=tenant)
    click.echo(f"purged {count} dead letter(s){scope}")
