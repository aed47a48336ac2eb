"""Server-Sent Events framing, both ways, with no I/O: bytes for the wire and a parser for clients.

A run's event goes out as ``id: <stream id>``, ``event: <name>`` and one ``data:`` line of JSON;
pings and listener-side stop events have no ``id`` so that a client's ``Last-Event-ID`` always
names an event of the run's stream. :class:`SSEParser` is the client side (tests, benchmarks,
the CLI), following the WHATWG event-stream rules.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

RETRY_MS = 1000
"""Reconnection delay a browser's EventSource uses after a dropped connection."""


@dataclass(frozen=True)
class SSEMessage:
    """One dispatched event: ``id`` is the last id seen (None if the event carried none)."""

    event: str
    data: str
    id: str | None = None
    has_id: bool = False

    def json(self) -> Any:
        """``data`` decoded as JSON."""
        return json.loads(self.data)


def _clean(value: str, what: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError(f"an SSE {what} cannot contain a line break: {value!r}")
    return value


def encode(
    data: str,
    *,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
) -> bytes:
    """One event as it goes on the wire; multi-line ``data`` becomes several ``data:`` lines."""
    lines: list[str] = []
    if id is not None:
        lines.append(f"id: {_clean(id, 'id')}")
    if event is not None:
        lines.append(f"event: {_clean(event, 'event name')}")
    if retry is not None:
        lines.append(f"retry: {int(retry)}")
    lines.extend(f"data: {line}" for line in data.replace("\r\n", "\n").split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


def encode_json(
    payload: Any,
    *,
    event: str | None = None,
    id: str | None = None,
) -> bytes:
    """``payload`` as compact JSON on one ``data:`` line."""
    return encode(json.dumps(payload, separators=(",", ":")), event=event, id=id)


def retry(milliseconds: int = RETRY_MS) -> bytes:
    """The reconnection delay for EventSource clients (a block without data dispatches nothing).

    Sent first: servers send the response headers with the first body bytes, so a stream whose
    run has not produced an event yet still answers at once.
    """
    return f"retry: {int(milliseconds)}\n\n".encode()


def comment(text: str = "") -> bytes:
    """A comment line (ignored by clients; keeps proxies from closing an idle connection)."""
    return f": {_clean(text, 'comment')}\n\n".encode()


class SSEParser:
    """Incremental parser: feed text as it arrives, get the events it completes."""

    def __init__(self) -> None:
        self._buffer = ""
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._id_set = False
        self.last_event_id: str | None = None
        self.retry: int | None = None

    def feed(self, text: str) -> list[SSEMessage]:
        """Parse ``text`` (any split of the stream); returns the events it completed."""
        self._buffer += text
        done: list[SSEMessage] = []
        while True:
            cut = _line_end(self._buffer)
            if cut is None:
                return done
            line, rest = cut
            self._buffer = rest
            message = self._line(line)
            if message is not None:
                done.append(message)

    def _line(self, line: str) -> SSEMessage | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
            self._id_set = True
        elif name == "retry" and value.isdigit():
            self.retry = int(value)
        return None

    def _dispatch(self) -> SSEMessage | None:
        has_id = self._id_set
        if has_id:
            self.last_event_id = self._id
        data, event = self._data, self._event
        self._data, self._event, self._id_set = [], "", False
        if not data:
            return None
        return SSEMessage(
            event=event or "message",
            data="\n".join(data),
            id=self.last_event_id,
            has_id=has_id,
        )


def _line_end(buffer: str) -> tuple[str, str] | None:
    """The first complete line and the rest; lines end with LF, CRLF or a lone CR."""
    lf, cr = buffer.find("\n"), buffer.find("\r")
    if cr == -1 or (lf != -1 and lf < cr):
        return None if lf == -1 else (buffer[:lf], buffer[lf + 1 :])
    if cr + 1 == len(buffer):
        return None  # a CR at the end may be the first half of CRLF: wait for more
    skip = 2 if buffer[cr + 1] == "\n" else 1
    return buffer[:cr], buffer[cr + skip :]
