"""Helpers shared by the API tests (this module holds no tests).

``admin_api(settings)`` builds the real app with an admin token configured; ``Api`` drives it
through Flask's test client the way an operator and tenants would; ``captured_events`` records
every domain event emitted while it is open.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from relay.app_factory import create_app
from relay.config import Settings
from relay.events.bus import EventContext
from relay.events.signals import ALL_SIGNALS
from relay.runtime import Runtime
from tests.conftest import migrated_external_db_in_use

ADMIN_TOKEN = "test-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass(frozen=True)
class TenantCredentials:
    """A tenant created through the admin API, with one active API key."""

    id: str
    key: str
    key_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


class Api:
    """The app under test, driven over HTTP."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.client = app.test_client()
        self.runtime: Runtime = app.extensions["relay"]

    def create_tenant(self, name: str = "acme", plan: str = "sandbox") -> TenantCredentials:
        created = self.client.post("/v1/tenants", json={"name": name, "plan": plan}, headers=ADMIN)
        assert created.status_code == 201, created.json
        tenant_id = created.json["id"]
        issued = self.client.post(
            f"/v1/tenants/{tenant_id}/api-keys", json={"name": "test"}, headers=ADMIN
        )
        assert issued.status_code == 201, issued.json
        return TenantCredentials(tenant_id, issued.json["key"], issued.json["id"])

    def call(
        self, method: str, path: str, tenant: TenantCredentials | None = None, **kwargs: Any
    ) -> Any:
        headers = dict(kwargs.pop("headers", {}))
        if tenant is not None:
            headers.update(tenant.headers)
        return self.client.open(path, method=method, headers=headers, **kwargs)

    def ok(
        self,
        method: str,
        path: str,
        tenant: TenantCredentials,
        status: int = 200,
        **kwargs: Any,
    ) -> Any:
        """Call and assert the status; returns the JSON answer."""
        response = self.call(method, path, tenant, **kwargs)
        assert response.status_code == status, (method, path, response.status_code, response.json)
        return response.json

    def rows(self, model: Any, **filters: Any) -> list[Any]:
        """Rows of ``model`` matching ``filters`` (read straight from the database)."""
        with self.runtime.db.session() as session:
            return list(session.scalars(select(model).filter_by(**filters)))

    def add(self, *rows: Any) -> None:
        """Insert rows directly (what a worker would have written)."""
        with self.runtime.db.transaction() as session:
            session.add_all(rows)


def admin_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"api": settings.api.model_copy(update={"admin_token": ADMIN_TOKEN})}
    )


@contextmanager
def admin_api(settings: Settings) -> Iterator[Api]:
    """The real app with an admin token and its schema in place."""
    configured = admin_settings(settings)
    app = create_app(configured)
    runtime: Runtime = app.extensions["relay"]
    if not migrated_external_db_in_use(configured):
        from relay.models.base import Base

        Base.metadata.create_all(runtime.db.engine)
    try:
        yield Api(app)
    finally:
        runtime.close()


@contextmanager
def captured_events(runtime: Runtime) -> Iterator[list[tuple[str, Any]]]:
    """Every (signal name, payload) emitted while open, in order."""
    seen: list[tuple[str, Any]] = []
    connected = []
    for signal in ALL_SIGNALS:

        def record(payload: Any, _ctx: EventContext, _name: str = signal.name) -> None:
            seen.append((_name, payload))

        runtime.bus.connect(signal, record)
        connected.append((signal, record))
    try:
        yield seen
    finally:
        for signal, receiver in connected:
            runtime.bus.disconnect(signal, receiver)
