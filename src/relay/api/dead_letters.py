"""The calling tenant's dead letters: list, read (with traceback), replay.

Another tenant's letter is a 404, never a 403: its existence is not revealed. A second replay of
the same letter is a 409 naming the task the first replay enqueued.
"""

from __future__ import annotations

from flask import Blueprint, Response
from pydantic import Field

from relay.api.auth import current_runtime, tenant_id
from relay.api.body import parse_query, respond
from relay.api.openapi import TENANT, documented
from relay.services.dead_letter_service import (
    DeadLetterDetail,
    DeadLetterPage,
    DeadLetterService,
    ReplayAccepted,
)
from relay.services.pagination import PageParams

dead_letters = Blueprint("dead_letters", __name__)

_TAGS = ("dead letters",)


class DeadLetterListQuery(PageParams):
    """A page of dead letters, optionally only replayed or only not yet replayed ones."""

    replayed: bool | None = Field(None, description="true: replayed only; false: pending only")


def _service() -> DeadLetterService:
    return DeadLetterService(current_runtime())


@dead_letters.get("/dead-letters")
@documented(tags=_TAGS, security=TENANT, query=DeadLetterListQuery, ok=(200, DeadLetterPage))
def list_dead_letters() -> tuple[Response, int]:
    """The tenant's dead letters, newest first."""
    params = parse_query(DeadLetterListQuery)
    return respond(_service().list_page(tenant_id(), params, replayed=params.replayed))


@dead_letters.get("/dead-letters/<letter_id>")
@documented(tags=_TAGS, security=TENANT, ok=(200, DeadLetterDetail), errors=(404,))
def get_dead_letter(letter_id: str) -> tuple[Response, int]:
    """One dead letter, with the traceback of its last failure."""
    return respond(_service().get(letter_id, tenant_id()))


@dead_letters.post("/dead-letters/<letter_id>/replay")
@documented(tags=_TAGS, security=TENANT, ok=(202, ReplayAccepted), errors=(404, 409))
def replay_dead_letter(letter_id: str) -> tuple[Response, int]:
    """Enqueue the letter's task again (fresh attempts); 409 when it was replayed already."""
    return respond(_service().replay(letter_id, tenant_id()), 202)
