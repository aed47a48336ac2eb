"""Browser tests: Playwright drives Debian's chromium against a served relay and a real worker.

No browser is downloaded: the tests launch ``chromium`` from the system (``make test`` installs
it with apt). Without it they skip locally and fail in CI. With ``RELAY_SCREENSHOTS`` set to a
directory, the page tour saves a screenshot of every page there (``make screenshots``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from aiosmtpd.controller import Controller
from playwright.sync_api import Browser, Page, sync_playwright

from relay.config import MailSettings, Settings, load_settings
from tests.conftest import PLANS, _clean_external_db, run_worker
from tests.integration.streaming.support import (
    WORKFLOW_QUEUES,
    Served,
    _serve,
    streaming_settings,
)
from tests.integration.test_api_support import ADMIN_TOKEN, Api, TenantCredentials
from tests.integration.test_mail_task import Inbox, free_port
from tests.services import in_ci

READONLY_TOKEN = "browser-readonly-token"
SCREENSHOTS = os.environ.get("RELAY_SCREENSHOTS")


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if in_ci():
            pytest.fail("chromium is not installed (make test installs it with apt)")
        pytest.skip("chromium is not installed")
    return found


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    path = chromium_path()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=path, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    context.set_default_timeout(15_000)
    opened = context.new_page()
    yield opened
    context.close()


class FlakyInbox(Inbox):
    """Refuses (550) recipients of the domains in ``refused`` until they are taken out."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: set[str] = set()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address.rsplit("@", 1)[-1] in self.refused:
            return f"550 5.1.1 <{address}>: Recipient address rejected"
        envelope.rcpt_tos.append(address)
        return "250 OK"


@dataclass
class Site:
    """A served relay (HTTP on loopback) with a worker, its admin driver and a tenant."""

    served: Served
    api: Api
    tenant: TenantCredentials
    inbox: FlakyInbox

    @property
    def url(self) -> str:
        # "localhost" is a secure context for the browser, so the Secure cookie is kept.
        return f"http://localhost:{self.served.server.server_port}"

    def publish_app(self, graph: dict[str, Any]) -> str:
        who = self.tenant
        app_id = self.api.ok(
            "POST", "/v1/apps", who, 201, json={"name": "run", "mode": "workflow"}
        )["id"]
        self.api.ok("PUT", f"/v1/apps/{app_id}/workflows/draft", who, json={"graph": graph})
        self.api.ok("POST", f"/v1/apps/{app_id}/workflows/publish", who)
        return str(app_id)


@pytest.fixture(scope="module")
def module_settings(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str, migrated_external_db: str | None
) -> Settings:
    """Clean Redis and database once per module: a served site is shared by a module's tests
    (each test makes the tenants it counts on)."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    root = tmp_path_factory.mktemp("browser")
    overrides: dict[str, Any] = {
        "var_dir": root / "var",
        "redis": {"url": redis_url},
        "scheduling": {"rate_burst": dict.fromkeys(PLANS, 100_000)},
    }
    if migrated_external_db:
        _clean_external_db(migrated_external_db)
    else:
        overrides["database"] = {"url": f"sqlite:///{root / 'relay.db'}"}
    return load_settings(**overrides)


@pytest.fixture(scope="module")
def site(module_settings: Settings) -> Iterator[Site]:
    inbox = FlakyInbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    inbox.port = controller.port
    configured = streaming_settings(module_settings, stop_grace=1.0)
    configured = configured.model_copy(
        update={
            "api": configured.api.model_copy(update={"readonly_token": READONLY_TOKEN}),
            "mail": MailSettings(
                host="127.0.0.1", port=inbox.port, from_address="relay@example.test", timeout=5
            ),
            "workflow": configured.workflow.model_copy(update={"llm_token_delay": 0.05}),
        }
    )
    with ExitStack() as stack:
        stack.callback(controller.stop)
        served = _serve(configured)
        stack.callback(served.runtime.close)
        stack.callback(served.server.shutdown)
        stack.enter_context(
            run_worker(served.runtime, queues=[*WORKFLOW_QUEUES, "mail"], concurrency=4)
        )
        api = Api(served.app)
        yield Site(served, api, api.create_tenant("acme"), inbox)


def sign_in(page: Page, site: Site, token: str = ADMIN_TOKEN) -> None:
    page.goto(site.url + "/dashboard/")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url("**/dashboard/")


def shoot(page: Page, name: str, *, full_page: bool = True) -> None:
    """Save a screenshot of the page when ``RELAY_SCREENSHOTS`` names a directory."""
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=full_page)
