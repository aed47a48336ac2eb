"""Limit/offset pagination shared by every list operation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from relay.errors import BadRequest

MAX_LIMIT = 100
DEFAULT_LIMIT = 20

T = TypeVar("T")
Row = TypeVar("Row")
P = TypeVar("P", bound="Page[Any]")


class PageParams(BaseModel):
    """Which slice of a list to return (``?limit=`` and ``?offset=``)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Items per page (1-100)")
    offset: int = Field(0, ge=0, le=2**31 - 1, description="Items to skip")


class Page(BaseModel, Generic[T]):
    """One page of a list, newest first."""

    data: list[T]
    limit: int
    offset: int
    total: int = Field(description="Items in the whole list")
    has_more: bool = Field(description="True when items follow this page")


def paginate(
    session: Session,
    query: Select[Row],
    page: PageParams,
    view: Callable[[Sequence[Row]], Sequence[Any]],
    into: type[P],
) -> P:
    """Count ``query`` and fetch one page of it as an ``into`` (a :class:`Page` subclass).

    ``query`` must already be scoped (tenant) and ordered; ``view`` turns the rows into views.
    """
    if not (1 <= page.limit <= MAX_LIMIT) or page.offset < 0:
        raise BadRequest(f"limit must be 1..{MAX_LIMIT} and offset at least 0")
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = list(session.scalars(query.limit(page.limit).offset(page.offset)))
    total = int(total or 0)
    return into(
        data=list(view(rows)),
        limit=page.limit,
        offset=page.offset,
        total=total,
        has_more=page.offset + len(rows) < total,
    )
