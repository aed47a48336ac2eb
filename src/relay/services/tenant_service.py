"""Tenants (workspaces): create, change plan, list. Operator-only; the API guards it by token."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from relay.config import Plan
from relay.errors import BadRequest, NotFound
from relay.events import signals
from relay.events.payloads import TenantCreated, TenantUpdated
from relay.models import Tenant, TenantStatus, new_id
from relay.runtime import Runtime
from relay.services.pagination import Page, PageParams, paginate


class TenantView(BaseModel):
    """A tenant as the API shows it."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    plan: Plan
    status: str
    created_at: datetime
    updated_at: datetime


class TenantPage(Page[TenantView]):
    """A page of tenants."""


def parse_plan(value: str | Plan) -> Plan:
    """``value`` as a :class:`Plan`; ``BadRequest`` naming the valid plans otherwise."""
    try:
        return Plan(value)
    except ValueError:
        allowed = ", ".join(plan.value for plan in Plan)
        raise BadRequest(
            f"unknown plan {value!r}; expected one of {allowed}", details={"field": "plan"}
        ) from None


def _view(row: Tenant) -> TenantView:
    return TenantView(
        id=row.id,
        name=row.name,
        plan=Plan(row.plan),
        status=row.status,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _views(rows: Sequence[Tenant]) -> list[TenantView]:
    return [_view(row) for row in rows]


class TenantService:
    """Creates tenants and changes their plan, emitting ``tenant_was_*``."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def create(self, name: str, plan: str | Plan = Plan.SANDBOX) -> TenantView:
        """Create a tenant; emits ``tenant_was_created`` in the same transaction."""
        name = name.strip()
        if not name or len(name) > 255:
            raise BadRequest("name must be 1 to 255 characters", details={"field": "name"})
        chosen = parse_plan(plan)
        with self.runtime.db.transaction() as session:
            row = Tenant(id=new_id(), name=name, plan=chosen.value, status=TenantStatus.NORMAL)
            session.add(row)
            session.flush()
            self.runtime.bus.emit(
                signals.tenant_was_created, TenantCreated(tenant_id=row.id, plan=row.plan), session
            )
            return _view(row)

    def update_plan(self, tenant_id: str, plan: str | Plan) -> TenantView:
        """Change the tenant's plan; emits ``tenant_was_updated`` when it actually changes."""
        chosen = parse_plan(plan)
        with self.runtime.db.transaction() as session:
            row = session.get(Tenant, tenant_id)
            if row is None:
                raise NotFound("tenant not found")
            previous = row.plan
            if previous != chosen.value:
                row.plan = chosen.value
                session.flush()
                self.runtime.bus.emit(
                    signals.tenant_was_updated,
                    TenantUpdated(tenant_id=row.id, plan=row.plan, previous_plan=previous),
                    session,
                )
            return _view(row)

    def get(self, tenant_id: str) -> TenantView:
        """One tenant; ``NotFound`` when there is none with this id."""
        with self.runtime.db.session() as session:
            row = session.get(Tenant, tenant_id)
            if row is None:
                raise NotFound("tenant not found")
            return _view(row)

    def list_tenants(self, page: PageParams) -> TenantPage:
        """Every tenant, newest first."""
        with self.runtime.db.session() as session:
            query = select(Tenant).order_by(Tenant.created_at.desc(), Tenant.id.desc())
            return paginate(session, query, page, _views, TenantPage)
