"""The channel alone, no HTTP: Redis Stream and Redis pub/sub, timed from this process."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

from relay.models import new_id
from relay.runtime import Runtime
from relay.streaming import START, RedisStreamChannel
from relay.streaming.queue_events import TextChunkEvent

RATE = 200.0
GAPS, GAP_SECONDS = 5, 0.1


def paced(count: int, rate: float, publish: Callable[[int], None]) -> None:
    """Call ``publish(i)`` ``count`` times at ``rate`` per second (absolute schedule)."""
    start = time.perf_counter()
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        publish(i)


def stamp() -> TextChunkEvent:
    return TextChunkEvent(text=str(time.perf_counter_ns()))


def ms(sent_ns: str) -> float:
    return (time.perf_counter_ns() - int(sent_ns)) / 1e6


def gaps(count: int) -> set[int]:
    return {count * (i + 1) // (GAPS + 1) for i in range(GAPS)}


def stream_latencies(runtime: Runtime, count: int) -> list[float]:
    """XADD→XREAD latencies (ms) in this process: the channel without HTTP."""
    channel = RedisStreamChannel(runtime.redis, retention=60, active_ttl=60)
    run_id, latencies, done = new_id(), [], threading.Event()

    def reader() -> None:
        position = START
        while not done.is_set():
            for entry in channel.read(run_id, position, block=0.5):
                position = entry.id
                latencies.append(ms(json.loads(entry.data)["text"]))
                if entry.final:
                    done.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    time.sleep(0.05)  # let the reader block in XREAD first
    paced(count, RATE, lambda _: channel.append(run_id, "text_chunk", stamp().model_dump_json()))
    channel.append(run_id, "text_chunk", stamp().model_dump_json(), final=True)
    thread.join(10)
    return latencies


def pubsub_latencies(runtime: Runtime, count: int) -> list[float]:
    """PUBLISH→subscriber latencies (ms): Redis pub/sub as the channel (Dify's)."""
    name, latencies = f"bench:pubsub:{new_id()}", []
    pubsub = runtime.redis.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(name)
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            message = pubsub.get_message(timeout=0.5)
            if message is not None:
                latencies.append(ms(json.loads(message["data"])["text"]))

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    time.sleep(0.05)
    paced(count, RATE, lambda _: runtime.redis.publish(name, stamp().model_dump_json()))
    time.sleep(0.2)
    done.set()
    thread.join(5)
    pubsub.close()
    return latencies


def pubsub_delivered_with_reconnects(runtime: Runtime, count: int) -> int:
    """Events a pub/sub subscriber gets when it unsubscribes GAPS times for GAP_SECONDS."""
    name, seen = f"bench:pubsub:{new_id()}", 0
    pending = gaps(count)
    pubsub = runtime.redis.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(name)
    stop = threading.Event()

    def publish() -> None:
        paced(count, RATE, lambda i: runtime.redis.publish(name, str(i)))
        stop.set()

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    while not (stop.is_set() and pubsub.get_message(timeout=0.2) is None):
        if pubsub.get_message(timeout=0.05) is None:
            continue
        seen += 1
        if seen in pending:
            pending.discard(seen)
            pubsub.unsubscribe(name)
            time.sleep(GAP_SECONDS)
            pubsub.subscribe(name)
    pubsub.close()
    return seen
