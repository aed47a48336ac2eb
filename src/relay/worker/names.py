"""Stable worker node names: the same host and queue set give the same name on every start.

Celery tools (``celery inspect``, ``celery status``, Flower) key workers by node name. A name
with the process id in it makes every restart look like a new worker and leaves the old one
listed as offline; a name derived from the host and the queues the worker consumes comes back
as the same worker after a restart.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from relay import catalog

# Longer queue lists are shortened to a digest: node names end up in Redis keys and UI columns.
_MAX_LABEL = 48
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]")


def queue_label(queues: Iterable[str]) -> str:
    """A short, stable label of a queue set: ``all``, the sorted names, or a digest of them."""
    names = sorted({q.strip() for q in queues if q.strip()})
    if names == sorted(catalog.queue_names()):
        return "all"
    label = _UNSAFE.sub("_", "+".join(names))
    if len(label) <= _MAX_LABEL:
        return label
    digest = hashlib.sha1("+".join(names).encode()).hexdigest()[:10]
    return f"{names[0]}+{len(names) - 1}more-{digest}"


def node_name(queues: Iterable[str], host: str) -> str:
    """``relay-<queue label>@<host>``; two workers on one host with the same queues need ``-n``."""
    return f"relay-{queue_label(queues)}@{host}"
