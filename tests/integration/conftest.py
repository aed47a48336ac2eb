"""Fixtures shared by the integration tests that drive the HTTP API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from relay.config import Settings
from tests.integration.test_api_support import Api, TenantCredentials, admin_api


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    """The API of a fresh app, driven through Flask's test client with the admin token."""
    with admin_api(settings) as driver:
        yield driver


@pytest.fixture
def tenant(api: Api) -> TenantCredentials:
    """A new tenant with an API key."""
    return api.create_tenant()
