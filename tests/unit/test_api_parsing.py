"""Request parsing and credentials, without any backing service."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from flask import Flask
from pydantic import BaseModel, ConfigDict, ValidationError

from relay.api.auth import bearer_token
from relay.api.body import Name, json_body, parse_body, parse_query
from relay.config import load_settings
from relay.errors import BadRequest, Unauthorized
from relay.services.auth_service import (
    AdminDisabled,
    check_admin_token,
    generate_api_key,
    hash_api_key,
)
from relay.services.pagination import PageParams

app = Flask(__name__)


class Sample(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name


@pytest.mark.parametrize(
    ("data", "content_type", "expected"),
    [
        ('{"a": 1}', "application/json", {"a": 1}),
        ('{"a": 1}', "application/json; charset=utf-8", {"a": 1}),
        ('{"a": 1}', "application/vnd.api+json", {"a": 1}),
        ("", "application/json", {}),
        ("  \n", None, {}),
        ("", None, {}),
    ],
)
def test_json_body_accepts_objects_and_empty_bodies(
    data: str, content_type: str | None, expected: dict[str, Any]
) -> None:
    with app.test_request_context("/", method="POST", data=data, content_type=content_type):
        assert json_body() == expected


@pytest.mark.parametrize(
    ("data", "content_type", "fragment"),
    [
        ('{"a": ', "application/json", "malformed JSON"),
        ("{'a': 1}", "application/json", "malformed JSON"),
        (b"\xff\xfe\xfa", "application/json", "malformed JSON"),
        ("[1, 2]", "application/json", "must be an object"),
        ("null", "application/json", "must be an object"),
        ("3", "application/json", "must be an object"),
        ('{"a": 1}', "text/plain", "must be JSON"),
        ("a=1", "application/x-www-form-urlencoded", "must be JSON"),
    ],
)
def test_json_body_refuses_anything_else(
    data: str | bytes, content_type: str, fragment: str
) -> None:
    with (
        app.test_request_context("/", method="POST", data=data, content_type=content_type),
        pytest.raises(BadRequest) as excinfo,
    ):
        json_body()
    assert excinfo.value.code == "bad_request"
    assert excinfo.value.status == 400
    assert fragment in excinfo.value.message


def test_parse_body_validates_and_trims() -> None:
    with app.test_request_context("/", method="POST", json={"name": "  acme "}):
        assert parse_body(Sample).name == "acme"
    with (
        app.test_request_context("/", method="POST", json={"name": "a", "x": 1}),
        pytest.raises(ValidationError),
    ):
        parse_body(Sample)


@pytest.mark.parametrize(
    ("query", "limit", "offset"), [("", 20, 0), ("?limit=100&offset=7", 100, 7)]
)
def test_page_params_defaults_and_bounds(query: str, limit: int, offset: int) -> None:
    with app.test_request_context(f"/{query}"):
        page = parse_query(PageParams)
    assert (page.limit, page.offset) == (limit, offset)


@pytest.mark.parametrize("query", ["?x=1", "?limt=5", "?limit=5&offest=2"])
def test_unknown_query_parameters_are_refused(query: str) -> None:
    with app.test_request_context(f"/{query}"), pytest.raises(BadRequest) as excinfo:
        parse_query(PageParams)
    assert excinfo.value.code == "invalid_input"
    assert all(d["message"] == "unknown query parameter" for d in excinfo.value.details)


@pytest.mark.parametrize("query", ["?limit=0", "?limit=101", "?offset=-1", "?limit=a"])
def test_page_params_refuse_out_of_range(query: str) -> None:
    with app.test_request_context(f"/{query}"), pytest.raises(ValidationError):
        parse_query(PageParams)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer   abc ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("Bearer    ", None),
        ("abc", None),
        (None, None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    with app.test_request_context("/", headers=headers):
        assert bearer_token() == token


def test_admin_token_check() -> None:
    disabled = load_settings()
    with pytest.raises(AdminDisabled) as excinfo:
        check_admin_token(disabled, "anything")
    assert (excinfo.value.status, excinfo.value.code) == (403, "admin_disabled")

    enabled = load_settings(api={"admin_token": "s3cret"})
    check_admin_token(enabled, "s3cret")
    for wrong in [None, "", "s3cre", "s3cret ", "S3CRET"]:
        with pytest.raises(Unauthorized):
            check_admin_token(enabled, wrong)


def test_api_keys_are_random_and_hashed_with_sha256() -> None:
    keys = {generate_api_key() for _ in range(50)}
    assert len(keys) == 50
    key = keys.pop()
    assert key.startswith("relay-")
    assert len(key) == 49
    assert hash_api_key(key) == hashlib.sha256(key.encode()).hexdigest()
