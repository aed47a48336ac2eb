"""SSE framing: what the server writes, the parser reads back, however the bytes are split."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.streaming import sse
from relay.streaming.sse import SSEMessage, SSEParser


def test_an_event_has_id_event_and_one_data_line() -> None:
    frame = sse.encode_json({"event": "text_chunk", "text": "hi"}, event="text_chunk", id="5-0")
    assert frame == b'id: 5-0\nevent: text_chunk\ndata: {"event":"text_chunk","text":"hi"}\n\n'


def test_pings_carry_no_id_so_last_event_id_stays_on_the_last_event() -> None:
    parser = SSEParser()
    wire = sse.encode("{}", event="text_chunk", id="7-1") + sse.encode("{}", event="ping")
    messages = parser.feed(wire.decode())
    assert [(m.event, m.id, m.has_id) for m in messages] == [
        ("text_chunk", "7-1", True),
        ("ping", "7-1", False),
    ]
    assert parser.last_event_id == "7-1"


def test_multiline_data_and_comments() -> None:
    wire = sse.comment("keep-alive") + sse.encode("line 1\nline 2", event="x") + b"retry: 500\n\n"
    parser = SSEParser()
    assert parser.feed(wire.decode()) == [SSEMessage(event="x", data="line 1\nline 2")]
    assert parser.retry == 500


def test_line_breaks_in_ids_and_names_are_refused() -> None:
    with pytest.raises(ValueError, match="line break"):
        sse.encode("{}", id="1-0\nevent: forged")
    with pytest.raises(ValueError, match="line break"):
        sse.encode("{}", event="a\rb")


def test_crlf_and_lone_cr_line_endings() -> None:
    parser = SSEParser()
    assert parser.feed("id: 1-0\r\nevent: a\rdata: x\r\n\r\n") == [
        SSEMessage(event="a", data="x", id="1-0", has_id=True)
    ]


texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


@given(
    events=st.lists(
        st.tuples(texts, st.sampled_from(["text_chunk", "ping", "node_started"]), st.booleans()),
        max_size=12,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=8),
)
def test_any_split_of_the_stream_parses_to_the_same_events(
    events: list[tuple[str, str, bool]], cuts: list[int]
) -> None:
    wire = b"".join(
        sse.encode_json({"text": text}, event=name, id=f"{i}-0" if with_id else None)
        for i, (text, name, with_id) in enumerate(events)
    ).decode()
    parser = SSEParser()
    got: list[SSEMessage] = []
    position = 0
    for cut in sorted(c % (len(wire) + 1) for c in cuts):
        got += parser.feed(wire[position:cut])
        position = max(position, cut)
    got += parser.feed(wire[position:])
    assert [(json.loads(m.data)["text"], m.event, m.has_id) for m in got] == events


def test_the_retry_preamble_sets_the_reconnect_delay_and_dispatches_nothing() -> None:
    parser = SSEParser()
    assert parser.feed(sse.retry(1500).decode()) == []
    assert parser.retry == 1500
