"""``relay`` command line: up, api, worker, beat, migrate, queues, dlq, config, tenants, apps,
runs, tasks.

Each command imports what it runs inside its own function: ``relay --help`` and the small
commands start without loading Celery, the API and the workflow engine (start-up speed, not
cycles: the layers contract holds for this module like any other).
"""

from __future__ import annotations

import os
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


class RelayGroup(click.Group):
    """The ``relay`` group: any error ends the command with one clear line, never a traceback.

    ``RELAY_DEBUG=1`` lets an unexpected error through with its traceback.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except RelayError as exc:
            raise click.ClickException(exc.message) from None
        except Exception as exc:
            if os.environ.get("RELAY_DEBUG", "") not in ("", "0"):
                raise
            from relay.adapters.logs import redact

            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise click.ClickException(
                redact(f"{type(exc).__name__}: {first}") + " (RELAY_DEBUG=1 shows the traceback)"
            ) from None


@click.group(cls=RelayGroup, context_settings={"max_content_width": 100})
def main() -> None:
    """relay: the event and task backbone of a multi-tenant AI application platform.

    Start with `relay up` (the whole stack on this machine), then see the README's quick start.
    """


def _register_more() -> None:
    from relay import cli_apps

    cli_apps.register(main)


@main.command()
@click.option(
    "--startup-timeout", default=60.0, show_default=True, help="Seconds to become healthy"
)
def up(startup_timeout: float) -> None:
    """Run the whole stack on this machine until Ctrl-C.

    Starts the embedded Redis when RELAY_REDIS_URL is unset, migrates the database, then a
    worker, beat and the API. The first start generates an admin token into the var directory.
    """
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
@click.option("--quiet", is_flag=True, help="No start-up banner (relay up prints its own)")
def worker(
    queues: str,
    concurrency: int | None,
    pool: str,
    hostname: str | None,
    include: tuple[str, ...],
    quiet: bool,
) -> None:
    """Run a Celery worker on the given queues."""
    from prometheus_client import start_http_server

    from relay.adapters.prometheus import enable_multiprocess
    from relay.composition import create_runtime
    from relay.worker.hooks import install_worker_hooks
    from relay.worker.names import node_name

    settings = _settings()
    names = catalog.queue_names() if queues == "all" else [q.strip() for q in queues.split(",")]
    unknown = sorted(set(names) - set(catalog.queue_names()))
    if unknown:
        raise click.BadParameter(f"unknown queue(s): {', '.join(unknown)}", param_hint="--queues")
    # Before the runtime and the pool children exist: the children's metrics add up.
    enable_multiprocess(settings.var_dir, "worker")
    runtime = create_runtime(settings)
    install_worker_hooks(
        runtime.celery,
        runtime.db,
        runtime.lifecycle,
        shutdown_grace=settings.celery.shutdown_grace,
    )
    monitoring = settings.monitoring
    if monitoring.worker_metrics_port:
        start_http_server(
            monitoring.worker_metrics_port,
            addr=monitoring.worker_metrics_host,
            registry=runtime.metrics.registry,
        )
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
        runtime.celery.worker_main(["--quiet", *argv] if quiet else argv)
    finally:
        runtime.close()  # flush what the main process buffered (records, stats)


@main.command()
@click.option("--quiet", is_flag=True, help="No start-up banner (relay up prints its own)")
def beat(quiet: bool) -> None:
    """Run the periodic scheduler (running two is safe).

    A second beat waits for the first one's lock and takes over when it stops.
    """
    from relay.composition import create_runtime

    runtime = create_runtime(_settings())
    argv = ["beat", "--loglevel", runtime.settings.log.level]
    try:
        runtime.celery.start(["--quiet", *argv] if quiet else argv)
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
    from relay.cli_apps import print_table
    from relay.services.queue_service import queue_lengths

    lengths = queue_lengths(_runtime())
    rows = []
    for spec in catalog.QUEUES:
        # A task's default queue and the queues it goes to by plan (alt_queues) both carry it.
        tasks = [t.name for t in catalog.TASKS if spec.name in (t.queue, *t.alt_queues)]
        beat = [b.task for b in catalog.BEAT if b.task in tasks]
        shown = ", ".join(f"{name} (beat)" if name in beat else name for name in tasks)
        fair = "fair" if spec.name in catalog.FAIR_QUEUES else ""
        rows.append((spec.name, lengths.get(spec.name, 0), fair, spec.purpose, shown or "-"))
    print_table(("queue", "waiting", "scheduling", "purpose", "tasks"), rows)


@main.command("config")
@click.option("--markdown", is_flag=True, help="As the Markdown table in the README")
@click.option("--changed", is_flag=True, help="Only settings that are not at their default")
def config_cmd(markdown: bool, changed: bool) -> None:
    """Show the settings in effect and flag invalid ones.

    Each setting with its value in effect, its source (environment or default) and what is
    wrong with it; exits non-zero when a value is invalid. Secrets are masked.
    """
    if markdown:
        click.echo(settings_table())
        return
    from relay.cli_apps import print_config

    if not print_config(changed_only=changed):
        raise click.ClickException("the configuration has invalid values (marked above)")


def settings_table() -> str:
    """The README's configuration table."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    lines += [f"| `{n}` | `{d}` | {text} |" for n, d, text in describe_settings()]
    return "\n".join(lines)


@main.group()
def tenants() -> None:
    """Tenants and their API keys (the same services as the admin API)."""


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
    from relay.cli_apps import print_table
    from relay.scheduling.metrics import tenant_snapshot

    rows = tenant_snapshot(_runtime().dispatcher.queue, queue)
    if not rows:
        click.echo("no tenant has work in the fair scheduler")
        return
    print_table(
        ("queue", "tenant", "weight", "waiting", "running", "vruntime"),
        [(r.queue, r.tenant, r.weight, r.waiting, r.running, f"{r.vruntime:.3f}") for r in rows],
    )


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
    from relay.cli_apps import print_table

    print_table(
        ("id", "plan", "status", "created", "name"),
        [
            (t.id, t.plan, t.status, t.created_at.isoformat(timespec="seconds"), t.name)
            for t in page.data
        ],
    )
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
    if as_json:
        for letter in letters:
            click.echo(letter.model_dump_json())
    elif letters:
        from relay.cli_apps import print_table

        rows = [
            (
                letter.id,
                letter.created_at.isoformat(timespec="seconds"),
                letter.task_name,
                letter.reason,
                letter.attempts,
                letter.tenant_id,
                f"replayed as {letter.replayed_task_id}" if letter.replayed_at else "pending",
                _short(letter.error, 80),
            )
            for letter in letters
        ]
        columns = ("id", "created", "task", "reason", "attempts", "tenant", "state", "error")
        print_table(columns, rows)
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


_register_more()
