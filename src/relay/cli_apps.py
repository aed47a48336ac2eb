"""``relay apps``, ``relay runs`` and ``relay tasks``: the tenant's apps, runs and task records.

Like the other commands they talk to the database through the services (no HTTP server needed),
print tables with headers (rich), and turn relay's errors into one clear line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from relay.errors import RelayError


def _console(err: bool = False) -> Console:
    probe = Console(stderr=err)
    # A pipe has no width: wide enough that rows stay one line each for grep and friends.
    width = probe.width if probe.is_terminal else 250
    return Console(stderr=err, width=width, highlight=False)


@contextmanager
def runtime_for_cli() -> Iterator[Any]:
    """A runtime on the configured settings; relay errors become one clear line."""
    from relay.composition import create_runtime
    from relay.config import load_settings

    try:
        runtime = create_runtime(load_settings())
    except RelayError as exc:
        raise click.ClickException(exc.message) from None
    try:
        yield runtime
    except RelayError as exc:
        if isinstance(exc.details, dict) and exc.details.get("attention"):
            _attention_table(exc.details["attention"], err=True)
        raise click.ClickException(exc.message) from None
    finally:
        runtime.close()


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    """A rich table with a header row; None shows as '-'."""
    grid = Table(title=title, title_justify="left", header_style="bold")
    for index, column in enumerate(columns):
        # Ids and short values stay whole; the last column (a message, an error) wraps.
        last = index == len(columns) - 1
        grid.add_column(column, overflow="fold", no_wrap=not last)
    for row in rows:
        grid.add_row(*("-" if value is None else str(value) for value in row))
    return grid


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print rows under a header row (rich), sized for the terminal or one line per row."""
    _console().print(table(None, columns, rows))


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value is not None else "-"


def _attention_table(items: Sequence[dict[str, Any]], *, err: bool = False) -> None:
    rows = [(i.get("code"), i.get("node_id"), i.get("field"), i.get("message")) for i in items]
    _console(err).print(table("needs attention", ("code", "node", "field", "message"), rows))


# --- apps ---------------------------------------------------------------------------------------


@click.group()
def apps() -> None:
    """Apps of a tenant: import a Dify export, export, list."""


@apps.command("import")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--tenant", required=True, help="Tenant id (from `relay tenants create`)")
@click.option("--publish", is_flag=True, help="Publish the workflow at once")
@click.option("--name", default=None, help="Name of the app (default: the export's; one file)")
@click.option("--json", "as_json", is_flag=True, help="Print each report as one JSON line")
def apps_import(
    files: tuple[Path, ...], tenant: str, publish: bool, name: str | None, as_json: bool
) -> None:
    """Create apps from Dify exports (YAML or JSON files, as Dify writes them).

    One file prints its report: what was mapped and what needs attention. Several files print
    one row each, with progress; a file that cannot be imported is named and the rest go on.
    """
    from relay.services.app_dsl_service import AppDslService

    if name and len(files) > 1:
        raise click.UsageError("--name applies to a single file")
    if len(files) > 1 and not as_json:
        _import_many(files, tenant, publish)
        return
    with runtime_for_cli() as runtime:
        for file in files:
            report = AppDslService(runtime).import_app(
                tenant,
                file.read_bytes(),
                as_json=file.suffix.lower() == ".json",
                publish=publish,
                name=name,
            )
            if as_json:
                click.echo(report.model_dump_json(by_alias=True))
    if as_json:
        return
    app, mapped = report.app, report.mapped
    state = "published" if report.published else "draft saved"
    click.echo(f"imported {app.id}  {app.name}  ({app.mode}, {state}, {report.status})")
    if "node_types" in mapped:
        types = ", ".join(f"{kind} {count}" for kind, count in mapped["node_types"].items())
        click.echo(
            f"mapped   {mapped['nodes']} nodes ({types}), {mapped['edges']} edges, "
            f"{mapped['environment_variables']} environment and "
            f"{mapped['conversation_variables']} conversation variables"
        )
    if report.attention:
        _attention_table([item.model_dump() for item in report.attention])


def _import_many(files: Sequence[Path], tenant: str, publish: bool) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress

    from relay.services.app_dsl_service import AppDslService

    rows: list[tuple[Any, ...]] = []
    failed = 0
    columns = ("importing", BarColumn(), MofNCompleteColumn())
    with runtime_for_cli() as runtime, Progress(*columns, console=_console(err=True)) as bar:
        job = bar.add_task("import", total=len(files))
        for file in files:
            try:
                report = AppDslService(runtime).import_app(
                    tenant, file.read_bytes(), as_json=file.suffix.lower() == ".json",
                    publish=publish,
                )  # fmt: skip
            except RelayError as exc:
                failed += 1
                rows.append((file.name, "-", "-", "failed", exc.message))
            else:
                codes = sorted({item.code for item in report.attention})
                rows.append(
                    (file.name, report.app.id, report.app.mode, report.status, ", ".join(codes))
                )
            bar.advance(job)
    print_table(("file", "app", "mode", "status", "attention"), rows)
    if failed:
        raise click.ClickException(f"{failed} of {len(files)} file(s) could not be imported")


@apps.command("export")
@click.argument("app_id")
@click.option("--tenant", required=True, help="Tenant id")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml")
def apps_export(app_id: str, tenant: str, output: Path | None, fmt: str) -> None:
    """Write the app as a Dify export (to stdout, or --output FILE)."""
    from relay.services.app_dsl_service import AppDslService
    from relay.workflow.dsl_document import dump_yaml

    with runtime_for_cli() as runtime:
        document = AppDslService(runtime).export_app(tenant, app_id)
    text = dump_yaml(document) if fmt == "yaml" else json.dumps(document, ensure_ascii=False)
    if output is None:
        click.echo(text)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)


@apps.command("list")
@click.option("--tenant", required=True, help="Tenant id")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100))
def apps_list(tenant: str, limit: int) -> None:
    """The tenant's apps, newest first."""
    from relay.services.app_service import AppService
    from relay.services.pagination import PageParams

    with runtime_for_cli() as runtime:
        page = AppService(runtime).list_apps(tenant, PageParams(limit=limit))
    rows = [
        (a.id, a.mode, "yes" if a.has_published_workflow else "no", _when(a.created_at), a.name)
        for a in page.data
    ]
    _console().print(table(None, ("id", "mode", "published", "created", "name"), rows))
    click.echo(f"{len(page.data)} of {page.total} app(s)", err=True)


@apps.group("keys")
def app_keys() -> None:
    """App API keys of the Dify-compatible Service API (/dify/v1)."""


@app_keys.command("create")
@click.argument("app_id")
@click.option("--tenant", required=True, help="Tenant id")
@click.option("--name", default="Service API", show_default=True, help="A label for the key")
def app_keys_create(app_id: str, tenant: str, name: str) -> None:
    """Issue a key for the app; it is printed this once (only its hash is stored)."""
    from relay.services.app_keys import AppKeyService

    with runtime_for_cli() as runtime:
        issued = AppKeyService(runtime).issue(tenant, app_id, name)
    click.echo(issued.key)
    click.echo(f"key {issued.id} for app {app_id}: shown once, store it now", err=True)


@app_keys.command("list")
@click.argument("app_id")
@click.option("--tenant", required=True, help="Tenant id")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100))
def app_keys_list(app_id: str, tenant: str, limit: int) -> None:
    """The app's keys, newest first (never the keys themselves)."""
    from relay.services.app_keys import AppKeyService
    from relay.services.pagination import PageParams

    with runtime_for_cli() as runtime:
        page = AppKeyService(runtime).list_keys(tenant, app_id, PageParams(limit=limit))
    rows = [
        (k.id, k.key_prefix + "...", _when(k.created_at),
         _when(k.last_used_at) if k.last_used_at else None,
         _when(k.revoked_at) if k.revoked_at else None, k.name)
        for k in page.data
    ]  # fmt: skip
    columns = ("id", "prefix", "created", "last used", "revoked", "name")
    _console().print(table(None, columns, rows))
    click.echo(f"{len(page.data)} of {page.total} key(s)", err=True)


@app_keys.command("revoke")
@click.argument("app_id")
@click.argument("key_id")
@click.option("--tenant", required=True, help="Tenant id")
def app_keys_revoke(app_id: str, key_id: str, tenant: str) -> None:
    """Revoke a key at once."""
    from relay.services.app_keys import AppKeyService

    with runtime_for_cli() as runtime:
        AppKeyService(runtime).revoke(tenant, app_id, key_id)
    click.echo(f"revoked {key_id}", err=True)


# --- runs and tasks -----------------------------------------------------------------------------


@click.command("runs")
@click.option("--tenant", required=True, help="Tenant id")
@click.option("--app", "app_id", default=None, help="Only runs of this app")
@click.option(
    "--status",
    default=None,
    type=click.Choice(["running", "succeeded", "failed", "partial-succeeded", "stopped"]),
)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 100))
def runs(tenant: str, app_id: str | None, status: str | None, limit: int) -> None:
    """The tenant's workflow runs, newest first."""
    from relay.services.run_list_service import RunFilter, RunListService

    with runtime_for_cli() as runtime:
        page = RunListService(runtime).list_runs(
            tenant, RunFilter(app_id=app_id, status=status, limit=limit)
        )
    rows = [
        (r.id, r.app_id, r.status, f"{r.elapsed_time:.2f}s", r.total_steps, _when(r.created_at),
         r.error)
        for r in page.data
    ]  # fmt: skip
    columns = ("run", "app", "status", "elapsed", "steps", "created", "error")
    _console().print(table(None, columns, rows))
    click.echo(f"{len(page.data)} of {page.total} run(s)", err=True)


@click.command("tasks")
@click.option("--tenant", default=None, help="Only this tenant's tasks (default: every task)")
@click.option("--name", default=None, help="Only tasks of this name (relay.workflow.run, ...)")
@click.option(
    "--status",
    default=None,
    type=click.Choice(["PENDING", "RECEIVED", "STARTED", "RETRY", "SUCCESS", "FAILURE", "DEAD"]),
)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 100))
def tasks(tenant: str | None, name: str | None, status: str | None, limit: int) -> None:
    """Task records, newest first."""
    from relay.services.task_record_service import TaskFilter, TaskRecordService

    with runtime_for_cli() as runtime:
        page = TaskRecordService(runtime).list_records(
            tenant, TaskFilter(name=name, status=status, limit=limit)
        )
    rows = [
        (t.id, t.name, t.queue, t.status, t.attempts, _when(t.enqueued_at), t.tenant_id, t.error)
        for t in page.data
    ]
    columns = ("task", "name", "queue", "status", "attempts", "enqueued", "tenant", "error")
    _console().print(table(None, columns, rows))
    click.echo(f"{len(page.data)} of {page.total} task(s)", err=True)


def print_config(*, changed_only: bool = False) -> bool:
    """Print the configuration in effect; False when a value is invalid."""
    from relay.config.effective import effective_settings

    rows = effective_settings()
    shown = [row for row in rows if not changed_only or row.source != "default" or row.problem]
    _console().print(
        table(
            None,
            ("variable", "value", "source", "problem"),
            [(r.name, r.value, r.source, f"✗ {r.problem}" if r.problem else "") for r in shown],
        )
    )
    bad = [row for row in rows if row.problem]
    click.echo(f"{len(shown)} setting(s) shown, {len(bad)} invalid", err=True)
    return not bad


def register(main: click.Group) -> None:
    """Add these commands to the ``relay`` group."""
    for command in (apps, runs, tasks):
        main.add_command(command)
