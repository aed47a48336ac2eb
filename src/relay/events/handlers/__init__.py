"""Event handlers, one module each, wired by the explicit ``register_handlers()`` table.

Handlers do O(1) work inside the caller's transaction (``ctx.session``) or enqueue a task through
the outbox; they never commit.
"""

from __future__ import annotations

from relay.events.bus import EventBus


def register_handlers(bus: EventBus) -> None:
    """Connect every handler in ``HANDLERS`` to its signal (idempotent)."""
    for signal, handler, critical in HANDLERS:
        bus.connect(signal, handler, critical=critical)


HANDLERS: tuple = ()
