"""The dashboard's pages and the htmx fragments that keep them live."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for
from pydantic import ValidationError
from werkzeug.wrappers import Response as WerkzeugResponse

from relay.dashboard import session as auth
from relay.dashboard.drawing import layout, timeline
from relay.errors import BadRequest, Conflict, RelayError
from relay.services.dead_letter_service import DeadLetterService
from relay.services.operations_service import TASK_STATUSES, OperationsService
from relay.services.pagination import PageParams
from relay.services.run_list_service import RunFilter, RunListService, RunStatus
from relay.services.task_record_service import TaskFilter, TaskRecordService
from relay.services.workflow_run_service import WorkflowRunService
from relay.streaming import sse

dashboard = Blueprint(
    "dashboard",
    __name__,
    url_prefix="/dashboard",
    template_folder="templates",
    static_folder="static",
)
dashboard.before_request(auth.guard)

PAGE_SIZE = 50
REPLAY_BATCH = 5


@dashboard.context_processor
def _globals() -> dict[str, Any]:
    return {
        "role": auth.current_role(),
        "can_change": auth.can_change(),
        "csrf_token": auth.csrf_token(),
        "csrf_header": json.dumps({auth.CSRF_HEADER: auth.csrf_token()}),
    }


@dashboard.app_template_filter("when")
def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "—"


@dashboard.app_template_filter("seconds")
def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


@dashboard.errorhandler(RelayError)
def _relay_error(error: RelayError) -> tuple[str, int]:
    return render_template("error.html", message=error.message), error.status


def _ops() -> OperationsService:
    return OperationsService(auth.runtime())


def _fragment() -> bool:
    return request.headers.get("HX-Request") == "true" and not request.headers.get("HX-Boosted")


def _args(allowed: set[str]) -> dict[str, str]:
    """Non-empty query parameters among ``allowed``."""
    return {k: v for k, v in request.args.items() if k in allowed and v.strip()}


# --- sign-in ---------------------------------------------------------------------------------


@dashboard.route("/login", methods=["GET", "POST"], endpoint="sign_in")
def sign_in_page() -> str | WerkzeugResponse | tuple[str, int]:
    """The sign-in form; a right token starts a session."""
    if request.method == "POST":
        role = auth.role_for(request.form.get("token", ""))
        if role is None:
            form = render_template("login.html", error="wrong token", login_csrf=auth.login_csrf())
            return form, 401
        auth.sign_in(role)
        target = request.args.get("next", "")
        safe = target.startswith("/dashboard") and not target.startswith("//")
        return redirect(target if safe else url_for("dashboard.overview"))
    return render_template("login.html", error=None, login_csrf=auth.login_csrf())


@dashboard.post("/logout")
def sign_out() -> WerkzeugResponse:
    auth.sign_out()
    return redirect(url_for("dashboard.sign_in"))


# --- overview, queues and workers, tenants ---------------------------------------------------


@dashboard.get("/")
def overview() -> str:
    data = _ops().overview()
    template = "overview_live.html" if _fragment() else "overview.html"
    return render_template(template, data=data)


@dashboard.get("/queues")
def queues() -> str:
    ops = _ops()
    workers, statuses = ops.queues()
    template = "queues_live.html" if _fragment() else "queues.html"
    return render_template(
        template,
        workers=workers,
        queues=statuses,
        rates=ops.queue_rates(),
        beats=ops.heartbeat_ages(),
    )


@dashboard.get("/tenants")
def tenants() -> str:
    ops = _ops()
    shares = ops.tenant_shares()
    template = "tenants_live.html" if _fragment() else "tenants.html"
    return render_template(template, shares=shares, tenants=ops.tenants(), refusals=ops.refusals())


# --- tasks -----------------------------------------------------------------------------------


def _task_filter() -> tuple[TaskFilter, str | None]:
    raw = _args({"name", "status", "enqueued_after", "enqueued_before", "offset"})
    for key in ("enqueued_after", "enqueued_before"):
        if key in raw and len(raw[key]) == 16:  # <input type=datetime-local>: minutes, no zone
            raw[key] += ":00Z"
    try:
        query = TaskFilter.model_validate({**raw, "limit": PAGE_SIZE})
    except ValidationError as exc:
        raise BadRequest(f"bad filter: {exc.errors()[0]['msg']}") from None
    return query, request.args.get("tenant") or None


@dashboard.get("/tasks")
def tasks() -> str:
    query, tenant = _task_filter()
    page = TaskRecordService(auth.runtime()).list_records(tenant, query)
    return render_template(
        "tasks.html",
        page=page,
        tenant=tenant or "",
        query=query,
        statuses=TASK_STATUSES,
        tenants=_ops().tenants(),
    )


@dashboard.get("/tasks/<task_id>")
def task(task_id: str) -> str:
    record = _ops().task(task_id)
    letters = DeadLetterService(auth.runtime()).list_letters(record.tenant_id, limit=200)
    return render_template(
        "task.html", task=record, letters=[x for x in letters if x.task_id == task_id]
    )


# --- dead letters ----------------------------------------------------------------------------


def _letter_filter() -> tuple[str | None, bool | None, int]:
    tenant = request.args.get("tenant") or None
    replayed = {"yes": True, "no": False}.get(request.args.get("replayed", ""))
    try:
        offset = max(int(request.args.get("offset", "0")), 0)
    except ValueError:
        raise BadRequest("offset must be a number") from None
    return tenant, replayed, offset


@dashboard.get("/dead-letters")
def dead_letters() -> str:
    tenant, replayed, offset = _letter_filter()
    page = DeadLetterService(auth.runtime()).list_page(
        tenant, PageParams(limit=PAGE_SIZE, offset=offset), replayed=replayed
    )
    return render_template(
        "dead_letters.html",
        page=page,
        tenant=tenant or "",
        replayed=request.args.get("replayed", ""),
        tenants=_ops().tenants(),
    )


@dashboard.get("/dead-letters/<letter_id>")
def dead_letter(letter_id: str) -> str:
    letter = DeadLetterService(auth.runtime()).get(letter_id)
    return render_template("dead_letter.html", letter=letter)


@dashboard.post("/dead-letters/<letter_id>/replay")
def replay_letter(letter_id: str) -> str:
    service = DeadLetterService(auth.runtime())
    try:
        accepted = service.replay(letter_id)
    except Conflict:
        return render_template("replay_one.html", task_id=None, error="replayed already")
    return render_template("replay_one.html", task_id=accepted.task_id, error=None)


@dashboard.post("/dead-letters/replay")
def replay_many() -> str:
    """Replay a batch of the given letters; the fragment asks for the next batch itself."""
    ids = [i for i in request.form.getlist("ids") if i]
    if request.form.get("all_pending"):
        ids = DeadLetterService(auth.runtime()).pending_ids(request.form.get("tenant") or None)
    done = int(request.form.get("done", "0") or 0)
    total = int(request.form.get("total", "0") or 0) or len(ids)
    replayed = int(request.form.get("replayed", "0") or 0)
    failed = int(request.form.get("failed", "0") or 0)
    batch, rest = ids[:REPLAY_BATCH], ids[REPLAY_BATCH:]
    outcome = DeadLetterService(auth.runtime()).replay_many(batch)
    return render_template(
        "replay_progress.html",
        rest=rest,
        done=done + outcome.attempted,
        total=total,
        replayed=replayed + len(outcome.replayed),
        failed=failed + len(outcome.failed) + len(outcome.conflicts),
    )


@dashboard.post("/dead-letters/purge")
def purge_letters() -> str:
    tenant = request.form.get("tenant") or None
    raw_days = request.form.get("older_than_days", "").strip()
    try:
        days = float(raw_days) if raw_days else None
    except ValueError:
        raise BadRequest("older than: a number of days") from None
    if request.form.get("confirm") != "purge":
        count = DeadLetterService(auth.runtime()).letters.count(tenant) if days is None else None
        return render_template("purge_confirm.html", tenant=tenant, days=raw_days, count=count)
    purged = DeadLetterService(auth.runtime()).purge(older_than_days=days, tenant_id=tenant)
    return render_template("purge_done.html", purged=purged)


# --- runs ------------------------------------------------------------------------------------


@dashboard.get("/runs")
def runs() -> str:
    tenant = request.args.get("tenant") or None
    raw = _args({"status", "offset"})
    try:
        query = RunFilter.model_validate({**raw, "limit": PAGE_SIZE})
    except ValidationError as exc:
        raise BadRequest(f"bad filter: {exc.errors()[0]['msg']}") from None
    page = RunListService(auth.runtime()).list_runs(tenant, query) if tenant else None
    return render_template(
        "runs.html",
        page=page,
        tenant=tenant or "",
        status=raw.get("status", ""),
        statuses=[s.value for s in RunStatus],
        tenants=_ops().tenants(),
    )


STOP_POLLING = 286
"""htmx stops an ``hx-trigger="every ..."`` poll when the answer has this status."""


@dashboard.get("/runs/<tenant_id>/<run_id>")
def run(tenant_id: str, run_id: str) -> tuple[str, int]:
    detail = WorkflowRunService(auth.runtime()).operator_detail(tenant_id, run_id)
    statuses = {n.node_id: n.status for n in detail.node_executions}
    bars, total = timeline(detail.created_at, detail.node_executions)
    fragment = _fragment()
    ended = detail.status != "running"
    status = STOP_POLLING if fragment and ended else 200
    template = "run_live.html" if fragment else "run.html"
    return render_template(
        template,
        run=detail,
        tenant_id=tenant_id,
        graph=layout(detail.graph, statuses),
        bars=bars,
        total=total,
    ), status


@dashboard.get("/runs/<tenant_id>/<run_id>/events")
def run_events(tenant_id: str, run_id: str) -> WerkzeugResponse:
    """The run's events for the page's EventSource (the session authenticates it)."""
    after = request.headers.get("Last-Event-ID") or None
    service = WorkflowRunService(auth.runtime())
    items = service.operator_events(tenant_id, run_id, after=after)
    if service.delivered_all(run_id, after):
        return WerkzeugResponse(status=204)

    def body() -> Iterator[bytes]:
        yield sse.retry()
        for item in items:
            yield sse.encode(item.data, event="run_event", id=item.id)
            if item.final:
                yield sse.encode(item.data, event="run_end")

    response = WerkzeugResponse(body(), mimetype="text/event-stream", direct_passthrough=True)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    return response


@dashboard.post("/runs/<tenant_id>/<run_id>/stop")
def stop_run(tenant_id: str, run_id: str) -> str:
    result = WorkflowRunService(auth.runtime()).operator_stop(tenant_id, run_id)
    return render_template("stop_result.html", result=result)
