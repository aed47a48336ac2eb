"""Resume: a client dropped at 20 random points of a live run misses nothing and sees nothing twice.

Each reconnect sends ``Last-Event-ID`` and lands on the other of two API replicas (separate apps
on separate ports, sharing Redis and the database), as behind a load balancer.
"""

from __future__ import annotations

import random

from relay.config import Settings
from relay.streaming.channels import START, stream_key
from tests.integration.streaming.support import (
    SSEClient,
    run_id_of,
    streaming_stack,
    without_pings,
    workflow_graph,
)

DISCONNECTS = 20
REPLY = " ".join(f"w{i}" for i in range(120))


def test_reconnecting_at_random_points_loses_and_repeats_nothing(settings: Settings) -> None:
    rng = random.Random(7)
    with streaming_stack(settings, replicas=2) as stack:
        runtime = stack.runtime
        runtime.settings = runtime.settings.model_copy(
            update={"workflow": runtime.settings.workflow.model_copy(update={"llm_reply": REPLY})}
        )
        app_id = stack.publish_app(workflow_graph(llm_nodes=3))
        clients = [SSEClient(served.url, stack.tenant) for served in stack.servers]
        body = {"app_id": app_id, "inputs": {"topic": "resume"}, "user": "alice"}
        received: list[tuple[str | None, str]] = []
        last_id: str | None = None
        run_id = ""
        mid_run = 0
        for attempt in range(DISCONNECTS + 1):
            client = clients[attempt % 2]
            wanted = rng.randint(1, 25) if attempt < DISCONNECTS else None
            if attempt == 0:
                request = client.open("POST", "/v1/workflows/run", json=body)
            else:
                request = client.open(
                    "GET",
                    f"/v1/workflows/runs/{run_id}/events",
                    params={"user": "alice"},
                    last_event_id=last_id,
                )
            with request as (response, events):
                assert response.status_code == 200
                run_id = response.headers["X-Relay-Run-Id"]
                taken = 0
                for event in events:
                    if event.event == "ping":
                        continue
                    received.append((event.id, event.data))
                    last_id = event.id
                    taken += 1
                    if wanted is not None and taken == wanted:
                        break  # drop the connection mid-stream
            if wanted is not None and received[-1][1].find('"workflow_succeeded"') < 0:
                mid_run += 1

        # The uninterrupted sequence: a fresh read of the finished run, and the stream itself.
        whole = without_pings(
            clients[1].read_all(
                "GET", f"/v1/workflows/runs/{run_id}/events", params={"user": "alice"}
            )
        )
        for client in clients:
            client.close()
        stored = runtime.redis.xrange(stream_key(run_id), START, "+")

    assert run_id_of(whole) == run_id
    assert received == [(e.id, e.data) for e in whole]
    assert [entry_id for entry_id, _ in stored] == [entry_id for entry_id, _ in received]
    assert len({entry_id for entry_id, _ in received}) == len(received)  # nothing twice
    assert whole[-1].event == "workflow_succeeded"
    # The drill only proves something if the disconnects happened while the run was going on.
    assert mid_run >= DISCONNECTS // 2, mid_run
