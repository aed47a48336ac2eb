"""Stream tokens are bound to their run and to the key that signed them."""

from __future__ import annotations

import pytest

from relay.errors import Unauthorized
from relay.services.stream_tokens import StreamGrant, StreamTokens

GRANT = StreamGrant(tenant_id="t1", api_key_id="k1", run_id="run-1", user="alice")


def test_a_token_verifies_for_its_run_only() -> None:
    tokens = StreamTokens("secret", ttl=60)
    token, expires_at = tokens.issue(GRANT)
    assert tokens.verify(token, "run-1") == GRANT
    assert expires_at.tzinfo is not None
    with pytest.raises(Unauthorized, match="invalid stream token"):
        tokens.verify(token, "run-2")


def test_a_token_signed_with_another_key_or_altered_is_refused() -> None:
    token, _ = StreamTokens("secret", ttl=60).issue(GRANT)
    with pytest.raises(Unauthorized):
        StreamTokens("another secret", ttl=60).verify(token, "run-1")
    with pytest.raises(Unauthorized):
        StreamTokens("secret", ttl=60).verify(token[:-3] + "abc", "run-1")
    with pytest.raises(Unauthorized):
        StreamTokens("secret", ttl=60).verify("not-a-token", "run-1")


def test_a_secret_is_required() -> None:
    with pytest.raises(ValueError, match="secret"):
        StreamTokens("", ttl=60)
