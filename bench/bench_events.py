"""``EventBus.emit`` with three receivers against blinker's own ``send`` on the same receivers."""

from __future__ import annotations

import statistics
from typing import Any

from blinker import Namespace

from bench.common import Row, bench_runtime, best_of, per_call_us
from relay.events import signals
from relay.events.payloads import AppDraftWorkflowSynced

CALLS = 20_000
SESSION_CALLS = 2_000


def run(rounds: int) -> list[Row]:
    sink: list[Any] = []

    def make(i: int) -> Any:
        def receiver(payload: Any, *args: Any, **kwargs: Any) -> None:
            sink.append((i, payload))

        return receiver

    receivers = [make(i) for i in range(3)]
    raw = Namespace().signal("bench_raw")
    for r in receivers:
        raw.connect(r, weak=False)
    payload = AppDraftWorkflowSynced(tenant_id="t", app_id="a")

    with bench_runtime() as (_, runtime):
        bus = runtime.bus
        signal = signals.app_draft_workflow_was_synced
        existing = bus.receivers(signal)  # relay's own handler (a Redis SCAN) is not measured
        for r, _ in existing:
            bus.disconnect(signal, r)
        for r in receivers:
            bus.connect(signal, r)
        try:

            def relay_emit() -> float:
                sink.clear()
                return per_call_us(lambda: bus.emit(signal, payload), CALLS)

            def blinker_send() -> float:
                sink.clear()
                return per_call_us(lambda: raw.send(payload), CALLS)

            relay_us = best_of(rounds, relay_emit)
            raw_us = best_of(rounds, blinker_send)
            # Inside a transaction, as services emit: both sides open and commit the same one.
            db = runtime.db

            def in_transaction(send: Any) -> float:
                def once() -> None:
                    with db.transaction() as session:
                        send(session)

                sink.clear()
                return per_call_us(once, SESSION_CALLS)

            session_rows: list[tuple[str, float, float]] = []
            for label, writes in (
                ("receivers declared writes=False", False),
                ("receivers with default flags that run no statement", True),
            ):
                for r in receivers:
                    bus.connect(signal, r, writes=writes)
                # Alternate which side goes first each round: neither profits from a warm cache.
                relay_times, raw_times = [], []
                for round_no in range(rounds):
                    pair = [
                        ("relay", lambda: in_transaction(lambda s: bus.emit(signal, payload, s))),
                        ("raw", lambda: in_transaction(lambda s: raw.send(payload))),
                    ]
                    for side, fn in pair if round_no % 2 == 0 else reversed(pair):
                        (relay_times if side == "relay" else raw_times).append(fn())
                session_rows.append(
                    (label, statistics.median(relay_times), statistics.median(raw_times))
                )
        finally:
            for r in receivers:
                bus.disconnect(signal, r)
            for r, critical in existing:
                bus.connect(signal, r, critical=critical)
    return [
        Row(
            "emit, 3 receivers, no session (µs per event)",
            relay_us,
            raw_us,
            "µs",
            higher_is_better=False,
            note="baseline: blinker send(); relay isolates, times and counts each receiver",
        ),
        *(
            Row(
                f"emit in a transaction, 3 {label} (µs per transaction)",
                relay,
                raw,
                "µs",
                higher_is_better=False,
                note="both sides open and commit the same transaction; relay opens a "
                "receiver's savepoint on its first statement (none here)",
            )
            for label, relay, raw in session_rows
        ),
    ]
