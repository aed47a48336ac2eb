"""Saving a draft workflow invalidates the app's cached tool parameters.

Tool nodes cache their resolved parameter schemas in Redis under
``relay:tool_params:<app_id>:<tool>``; a new draft may change any of them, so all of the app's keys
go. SCAN (not KEYS) so that a large keyspace never blocks Redis, deleting in batches as it goes.
"""

from __future__ import annotations

import re

from relay.adapters.sql import after_commit
from relay.events.bus import EventContext
from relay.events.payloads import AppDraftWorkflowSynced

KEY_PREFIX = "relay:tool_params:"
_BATCH = 500
_GLOB = re.compile(r"[\\\[\]*?]")


def tool_params_pattern(app_id: str) -> str:
    """The SCAN pattern of ``app_id``'s keys (glob characters in the id matched literally)."""
    escaped = _GLOB.sub(lambda match: "\\" + match.group(0), app_id)
    return f"{KEY_PREFIX}{escaped}:*"


def clear_tool_parameters_cache(payload: AppDraftWorkflowSynced, ctx: EventContext) -> None:
    """``app_draft_workflow_was_synced``: delete ``relay:tool_params:<app_id>:*`` (after commit:
    a SCAN is many Redis round trips, never run inside the caller's transaction)."""
    if ctx.session is None:
        _clear(payload.app_id, ctx)
    else:
        after_commit(ctx.session, lambda: _clear(payload.app_id, ctx))


def _clear(app_id: str, ctx: EventContext) -> None:
    batch: list[str] = []
    for key in ctx.redis.scan_iter(match=tool_params_pattern(app_id), count=_BATCH):
        batch.append(key)
        if len(batch) >= _BATCH:
            ctx.redis.delete(*batch)
            batch.clear()
    if batch:
        ctx.redis.delete(*batch)
