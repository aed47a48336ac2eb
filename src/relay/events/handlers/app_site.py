"""A new app gets its installation in the tenant and its public site (as in Dify).

The site is reached by a short random ``code`` that must be unique across all tenants. With 62^16
codes a collision is all but impossible, but two concurrent creations could still pick the same
one: each attempt runs in a savepoint, so losing that race costs one retry, not the request.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from relay.errors import EventError
from relay.events.bus import EventContext
from relay.events.payloads import AppCreated
from relay.models import InstalledApp, Site

SITE_CODE_LENGTH = 16
SITE_CODE_ALPHABET = string.ascii_letters + string.digits
MAX_CODE_ATTEMPTS = 5


def new_site_code() -> str:
    """A random site code (cryptographic randomness: codes are public but must not be guessable)."""
    return "".join(secrets.choice(SITE_CODE_ALPHABET) for _ in range(SITE_CODE_LENGTH))


def create_site_and_installed_app(payload: AppCreated, ctx: EventContext) -> None:
    """``app_was_created``: install the app in its tenant and give it a site (idempotent)."""
    session = ctx.require_session()
    installed = session.scalar(
        select(InstalledApp.id).where(
            InstalledApp.tenant_id == payload.tenant_id, InstalledApp.app_id == payload.app_id
        )
    )
    if installed is None:
        session.add(InstalledApp(tenant_id=payload.tenant_id, app_id=payload.app_id))
        session.flush()
    site = session.scalar(select(Site.id).where(Site.app_id == payload.app_id))
    if site is None:
        create_site(session, payload.tenant_id, payload.app_id, payload.name)


def create_site(
    session: Session,
    tenant_id: str,
    app_id: str,
    title: str,
    new_code: Callable[[], str] = new_site_code,
) -> Site:
    """Insert the app's site with a fresh unique code from ``new_code``, retrying on a collision."""
    for _ in range(MAX_CODE_ATTEMPTS):
        code = new_code()
        if session.scalar(select(Site.id).where(Site.code == code)) is not None:
            continue
        site = Site(tenant_id=tenant_id, app_id=app_id, code=code, title=title[:255])
        try:
            with session.begin_nested():
                session.add(site)
        except IntegrityError:
            # A concurrent transaction committed the same code first (the unique index says so).
            continue
        return site
    raise EventError(f"no unique site code after {MAX_CODE_ATTEMPTS} attempts")
