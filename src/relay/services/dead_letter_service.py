"""Dead letters for tenants (their own, over the API) and operators (all of them, in the CLI).

Every operation takes ``tenant_id``: a tenant's id scopes it to that tenant's letters (another
tenant's letter is "not found"); ``None`` is the operator's view of every letter. The API always
passes the authenticated tenant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from relay.errors import BadRequest, Conflict, NotFound, RelayError
from relay.runtime import Runtime
from relay.services.pagination import MAX_LIMIT, Page, PageParams
from relay.worker.deadletter import DeadLetters, DeadLetterView

NOT_FOUND = "dead letter not found"


class DeadLetterSummary(BaseModel):
    """A dead letter in a list."""

    # ``kwargs`` is an alias: the name clashes with pydantic's ``__init__(**kwargs)`` in mypy.
    model_config = ConfigDict(frozen=True, validate_by_name=True, serialize_by_alias=True)

    id: str
    task_id: str
    task_name: str
    queue: str
    tenant_id: str | None
    args: list[Any]
    keyword_args: dict[str, Any] = Field(alias="kwargs")
    reason: str
    error: str
    attempts: int
    created_at: datetime
    replayed_at: datetime | None
    replayed_task_id: str | None
    replay_of: str | None


class DeadLetterDetail(DeadLetterSummary):
    """One dead letter, with the traceback of its last failure."""

    traceback: str | None


class DeadLetterPage(Page[DeadLetterSummary]):
    """A page of dead letters, newest first."""


class ReplayAccepted(BaseModel):
    """The task a replay enqueued."""

    task_id: str


@dataclass
class BulkReplay:
    """Outcome of replaying many letters: new task id per letter, conflicts, other failures."""

    replayed: dict[str, str] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def attempted(self) -> int:
        return len(self.replayed) + len(self.conflicts) + len(self.failed)


@contextmanager
def _not_found() -> Iterator[None]:
    """One "not found" answer, the same for an unknown id and another tenant's letter."""
    try:
        yield
    except NotFound:
        raise NotFound(NOT_FOUND) from None


def _summary(view: DeadLetterView) -> DeadLetterSummary:
    return DeadLetterSummary.model_validate(view.as_dict())


def _detail(view: DeadLetterView) -> DeadLetterDetail:
    return DeadLetterDetail.model_validate(view.as_dict(with_traceback=True))


class DeadLetterService:
    """List, show, replay and purge dead letters through ``runtime.lifecycle.dead_letters``."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @property
    def letters(self) -> DeadLetters:
        return self.runtime.lifecycle.dead_letters

    def list_page(
        self, tenant_id: str | None, page: PageParams, *, replayed: bool | None = None
    ) -> DeadLetterPage:
        """One page of letters, newest first, with the total for ``has_more``."""
        if not (1 <= page.limit <= MAX_LIMIT) or page.offset < 0:
            raise BadRequest(f"limit must be 1..{MAX_LIMIT} and offset at least 0")
        total = self.letters.count(tenant_id, replayed=replayed)
        views = self.letters.list_letters(
            tenant_id, replayed=replayed, limit=page.limit, offset=page.offset
        )
        return DeadLetterPage(
            data=[_summary(v) for v in views],
            limit=page.limit,
            offset=page.offset,
            total=total,
            has_more=page.offset + len(views) < total,
        )

    def list_letters(
        self,
        tenant_id: str | None = None,
        *,
        task_name: str | None = None,
        replayed: bool | None = None,
        limit: int = 50,
    ) -> list[DeadLetterSummary]:
        """Up to ``limit`` letters, newest first, optionally of one task type (the CLI's list)."""
        if limit < 1:
            raise BadRequest("limit must be at least 1")
        views = self.letters.list_letters(
            tenant_id, task_name=task_name, replayed=replayed, limit=limit
        )
        return [_summary(v) for v in views]

    def get(self, letter_id: str, tenant_id: str | None = None) -> DeadLetterDetail:
        """One letter with its traceback; ``NotFound`` when it is not the tenant's."""
        with _not_found():
            return _detail(self.letters.get(letter_id, tenant_id))

    def replay(self, letter_id: str, tenant_id: str | None = None) -> ReplayAccepted:
        """Re-enqueue the letter's task (fresh attempts, same idempotency key).

        ``Conflict`` when it was replayed already, ``NotFound`` when it is not the tenant's.
        """
        with _not_found():
            return ReplayAccepted(task_id=self.letters.replay(letter_id, tenant_id))

    def pending_ids(self, tenant_id: str | None = None) -> list[str]:
        """Letters not replayed yet, oldest first."""
        return list(self.letters.pending_ids(tenant_id))

    def replay_many(
        self,
        letter_ids: Iterable[str],
        tenant_id: str | None = None,
        *,
        progress: Callable[[str], None] | None = None,
    ) -> BulkReplay:
        """Replay each letter; one that fails does not stop the rest.

        A letter replayed meanwhile (by someone else) is a conflict, not a failure.
        ``progress`` is called with each letter id once it is handled.
        """
        outcome = BulkReplay()
        for letter_id in letter_ids:
            try:
                outcome.replayed[letter_id] = self.replay(letter_id, tenant_id).task_id
            except Conflict:
                outcome.conflicts.append(letter_id)
            except RelayError as exc:
                outcome.failed[letter_id] = exc.message
            if progress is not None:
                progress(letter_id)
        return outcome

    def purge(self, *, older_than_days: float | None = None, tenant_id: str | None = None) -> int:
        """Delete letters (only those older than ``older_than_days`` when given); the count."""
        if older_than_days is not None and older_than_days < 0:
            raise BadRequest("older_than_days must not be negative")
        older_than = None if older_than_days is None else timedelta(days=older_than_days)
        return self.letters.purge(older_than=older_than, tenant_id=tenant_id)
