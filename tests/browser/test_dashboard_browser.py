"""The dashboard in a real browser: sign in, every page, a failed task found by tenant, a dead
letter replayed from the UI until its task succeeds, a live run watched and stopped."""

from __future__ import annotations

import time

from playwright.sync_api import Page, expect

from relay.config import Plan
from tests.browser.conftest import READONLY_TOKEN, Site, shoot, sign_in
from tests.integration.streaming.support import workflow_graph

SEND = "relay.mail.send"
IDLE = "pipeline"  # a fair queue no worker of these tests consumes


def _wait(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_sign_in_and_tour_every_page(page: Page, site: Site) -> None:
    page.goto(site.url + "/dashboard/")
    expect(page).to_have_url(site.url + "/dashboard/login?next=/dashboard/?")
    page.fill("input[name=token]", "wrong")
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_have_text("wrong token")
    shoot(page, "sign-in")
    sign_in(page, site)
    expect(page.locator("h1")).to_have_text("Overview")
    expect(page.locator(".health tbody tr").first).to_be_visible()
    shoot(page, "overview")
    page.click("text=Queues & workers")
    expect(page.locator("#queue-table")).to_contain_text("workflow_sandbox")
    expect(page.locator("#worker-table")).to_contain_text(" ago")
    shoot(page, "queues")
    page.click("nav >> text=Tenants")
    expect(page.locator("#tenant-table")).to_contain_text("acme")
    # Work arrives while the page is open: the table updates itself (no consumer on the queue,
    # so the scheduler keeps it running and waiting).
    team = site.api.create_tenant("umbrella", plan="team")
    for tenant, plan in ((site.tenant, Plan.SANDBOX), (team, Plan.TEAM)):
        for _ in range(4):
            site.served.runtime.dispatcher.submit(tenant.id, plan, "relay.ping", ["x"], queue=IDLE)
    expect(page.locator("#share-table")).to_contain_text("umbrella")
    expect(page.locator("#share-table tbody tr")).to_have_count(2)
    shoot(page, "tenants")
    page.click("nav >> text=Dead letters")
    expect(page.locator("h1")).to_have_text("Dead letters")
    page.click("nav >> text=Runs")
    expect(page.locator("h1")).to_have_text("Workflow runs")
    page.goto(site.url + "/docs")
    expect(page.locator(".swagger-ui .title").first).to_contain_text("relay API")
    shoot(page, "api-docs", full_page=False)


def test_the_read_only_role_sees_but_cannot_change(page: Page, site: Site) -> None:
    tenant = site.api.create_tenant("initech")
    site.inbox.refused.add("bounce.test")
    site.served.runtime.celery.send_task(
        SEND, args=["x@bounce.test", "Hi", "body"], headers={"tenant_id": tenant.id}
    )
    letters = site.served.runtime.lifecycle.dead_letters
    _wait(lambda: letters.count(tenant.id) == 1)
    sign_in(page, site, READONLY_TOKEN)
    expect(page.locator("header .role")).to_have_text("viewer (read-only)")
    page.goto(f"{site.url}/dashboard/dead-letters?tenant={tenant.id}")
    expect(page.locator("#letter-table tbody tr")).to_have_count(1)
    expect(page.get_by_role("button", name="Replay selected")).to_have_count(0)
    page.click("#letter-table tbody a >> nth=0")
    expect(page.get_by_role("button", name="Replay")).to_have_count(0)


def test_find_a_failed_task_by_tenant_and_replay_its_dead_letter(page: Page, site: Site) -> None:
    mine, other = site.api.create_tenant("hooli"), site.api.create_tenant("globex")
    site.inbox.refused.add("flaky.test")
    celery = site.served.runtime.celery
    for tenant in (mine, other):
        celery.send_task(
            SEND, args=["ops@flaky.test", "Hi", "body"], headers={"tenant_id": tenant.id}
        )
    letters = site.served.runtime.lifecycle.dead_letters
    _wait(lambda: letters.count(mine.id) == 1 and letters.count(other.id) == 1)
    delivered = len(site.inbox.messages)

    sign_in(page, site)
    page.click("nav >> text=Tasks")
    page.select_option("select[name=tenant]", mine.id)
    page.select_option("select[name=status]", "DEAD")
    page.click("#task-filter button[type=submit]")
    rows = page.locator("#task-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("550")
    shoot(page, "tasks")
    rows.first.locator("a").click()
    expect(page.locator("#task-status")).to_have_text("DEAD")
    expect(page.locator("#task-error")).to_contain_text("550")
    shoot(page, "task")

    # The mailbox accepts again: replay the letter from the UI and watch the new task succeed.
    site.inbox.refused.clear()
    page.click("text=Dead letters of this task >> xpath=following-sibling::ul//a >> nth=0")
    shoot(page, "dead-letter")
    page.get_by_role("button", name="Replay").click()
    replayed = page.locator("#replayed-task")
    expect(replayed).to_be_visible()
    replayed.click()
    deadline = time.monotonic() + 20
    status = page.locator("#task-status")
    # The new task's record may not be written yet (the worker writes records in batches): the
    # page then says it is not found, and a reload shows it.
    while status.count() == 0 or status.inner_text() != "SUCCESS":
        assert time.monotonic() < deadline, "the replayed task did not succeed"
        page.wait_for_timeout(300)
        page.reload()
    assert site.inbox.messages[-1][1] == ["ops@flaky.test"]

    # The other tenant's letter: replay many, with progress, from the list.
    page.click("nav >> text=Dead letters")
    page.select_option("select[name=tenant]", other.id)
    page.select_option("select[name=replayed]", "no")
    page.click("form.filters button[type=submit]")
    expect(page.locator("#letter-table tbody tr")).to_have_count(1)
    shoot(page, "dead-letters")
    page.get_by_role("button", name="Replay every pending letter").click()
    expect(page.locator("#replay-status")).to_contain_text("1 / 1 handled · 1 replayed")
    _wait(lambda: len(site.inbox.messages) == delivered + 2)


def test_watch_a_live_run_and_stop_it(page: Page, site: Site) -> None:
    site.served.runtime.settings = site.served.runtime.settings.model_copy(
        update={
            "workflow": site.served.runtime.settings.workflow.model_copy(
                update={"llm_reply": " ".join(f"w{i}" for i in range(400))}
            )
        }
    )
    app_id = site.publish_app(workflow_graph(llm_nodes=2))
    started = site.api.call(
        "POST",
        "/v1/workflows/run",
        site.tenant,
        json={
            "app_id": app_id,
            "inputs": {"topic": "t"},
            "user": "u",
            "response_mode": "streaming",
        },
        buffered=False,
    )
    assert started.status_code == 200, started.get_data(as_text=True)
    run_id = started.headers["X-Relay-Run-Id"]
    started.close()
    sign_in(page, site)
    page.goto(f"{site.url}/dashboard/runs?tenant={site.tenant.id}")
    expect(page.locator("#run-table tbody tr")).to_have_count(1)
    shoot(page, "runs")
    page.click(f"#run-table a[href$='{run_id}']")
    expect(page.locator("#stream-state")).to_have_text("live")
    expect(page.locator("#event-log li.event-text_chunk").first).to_be_visible()
    expect(page.locator("svg.graph .node")).to_have_count(4)
    shoot(page, "run")
    page.get_by_role("button", name="Stop run").click()
    expect(page.locator("#stop-result")).to_contain_text("Stop requested")
    expect(page.locator("#stream-state")).to_have_text("ended")
    expect(page.locator("#event-log li").last).to_contain_text('"stop"')
    expect(page.locator("#run-status")).to_have_text("stopped", timeout=10_000)
