"""Node types of real exports: each runs a small graph in Dify's export shape through the engine.

parameter-extractor and question-classifier run on the offline provider (deterministic JSON
answers) and on a fixed reply, which stands in for what a model writes.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import docx
import pytest

from relay.streaming.queue_events import to_queue_event
from relay.workflow import LLMProviderConfig, LLMSettings, create_services
from relay.workflow.errors import GraphValidationError
from relay.workflow.events import (
    GraphEngineEvent,
    GraphRunFailedEvent,
    GraphRunSucceededEvent,
    LoopRunNextEvent,
    LoopRunStartedEvent,
    LoopRunSucceededEvent,
    NodeRunStartedEvent,
    NodeRunSucceededEvent,
)
from relay.workflow.graph import Graph
from relay.workflow.nodes.document_extractor import csv_markdown, extract_text, html_text

from .helpers import build, edge, end, make_engine, node, probe, run_all, start

MODEL = {"provider": "openai", "name": "gpt-4o", "mode": "chat", "completion_params": {}}


def _succeeded(events: list[GraphEngineEvent]) -> dict[str, Any]:
    last = events[-1]
    assert isinstance(last, GraphRunSucceededEvent), last
    return dict(last.outputs)


def _fixed_reply(text: str) -> Any:
    return create_services(
        llm=LLMSettings(default=LLMProviderConfig(kind="offline", token_delay=0, reply=text))
    )


# --- question-classifier ---------------------------------------------------------------------


def _classifier_graph() -> Graph:
    classes = [
        {"id": "1", "name": "Billing and refunds"},
        {"id": "2", "name": "Technical problem"},
        {"id": "3", "name": "Other questions"},
    ]
    return build(
        [
            start("q"),
            node("qc", "question-classifier", query_variable_selector=["start", "q"],
                 model=MODEL, classes=classes, instruction="Customer support"),
            node("billing", "answer", answer="billing: {{#qc.class_name#}}"),
            node("tech", "answer", answer="tech: {{#qc.class_name#}}"),
            node("other", "answer", answer="other"),
        ],
        [edge("start", "qc"), edge("qc", "billing", "1"), edge("qc", "tech", "2"),
         edge("qc", "other", "3")],
    )  # fmt: skip


def test_question_classifier_takes_the_branch_of_the_chosen_class() -> None:
    graph = _classifier_graph()
    outputs = _succeeded(run_all(make_engine(graph, {"q": "I want a refund for my order"})))
    assert outputs["answer"] == "billing: Billing and refunds"
    outputs = _succeeded(run_all(make_engine(graph, {"q": "The app shows a technical error"})))
    assert outputs["answer"] == "tech: Technical problem"
    # No overlap with any class: the first class, as Dify falls back.
    outputs = _succeeded(run_all(make_engine(graph, {"q": "xyzzy"})))
    assert outputs["answer"] == "billing: Billing and refunds"


def test_question_classifier_reads_a_model_reply() -> None:
    services = _fixed_reply('Sure! ```json\n{"category_id": "3", "category_name": "Other"}\n```')
    events = run_all(make_engine(_classifier_graph(), {"q": "refund"}, services=services))
    assert _succeeded(events)["answer"] == "other"
    started = {e.node_id for e in events if isinstance(e, NodeRunStartedEvent)}
    assert "billing" not in started


def test_question_classifier_refuses_duplicate_class_ids() -> None:
    with pytest.raises(GraphValidationError, match="same id"):
        build(
            [start("q"), node("qc", "question-classifier", query_variable_selector=["start", "q"],
                              model=MODEL, classes=[{"id": "1", "name": "a"},
                                                    {"id": "1", "name": "b"}])],
            [edge("start", "qc")],
        )  # fmt: skip


# --- parameter-extractor ---------------------------------------------------------------------


def _extractor_graph() -> Graph:
    parameters = [
        {"name": "city", "type": "string", "description": "city", "required": True},
        {"name": "nights", "type": "number", "description": "nights", "required": True},
        {"name": "breakfast", "type": "bool", "description": "with breakfast", "required": False},
        {"name": "room", "type": "select", "options": ["single", "double"], "description": "",
         "required": False},
    ]  # fmt: skip
    return build(
        [
            start("text"),
            node("pe", "parameter-extractor", model=MODEL, query=["start", "text"],
                 parameters=parameters, reasoning_mode="prompt", instruction="Hotel booking"),
            end(city=["pe", "city"], nights=["pe", "nights"], breakfast=["pe", "breakfast"],
                room=["pe", "room"], ok=["pe", "__is_success"], reason=["pe", "__reason"]),
        ],
        [edge("start", "pe"), edge("pe", "end")],
    )  # fmt: skip


def test_parameter_extractor_offline_reads_parameters() -> None:
    text = "city: Lisbon, nights: 3, breakfast: yes, room: a double please"
    outputs = _succeeded(run_all(make_engine(_extractor_graph(), {"text": text})))
    assert outputs == {
        "city": "Lisbon",
        "nights": 3,
        "breakfast": True,
        "room": "double",
        "ok": 1,
        "reason": None,
    }


def test_parameter_extractor_types_a_model_reply() -> None:
    reply = '{"city": "Porto", "nights": "2", "breakfast": false}'
    graph = _extractor_graph()
    outputs = _succeeded(run_all(make_engine(graph, {"text": "x"}, services=_fixed_reply(reply))))
    assert (outputs["city"], outputs["nights"], outputs["breakfast"]) == ("Porto", 2, False)
    assert outputs["room"] == ""
    assert outputs["ok"] == 1


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("I cannot help", "holds no JSON object"),
        ('{"city": "Porto"}', "required parameter 'nights'"),
        ('{"city": "Porto", "nights": "many"}', "'nights' must be a number"),
        ('{"city": "Porto", "nights": 1, "room": "suite"}', "'room' must be one of"),
    ],
)
def test_parameter_extractor_reports_failure_without_failing_the_node(
    reply: str, reason: str
) -> None:
    graph = _extractor_graph()
    outputs = _succeeded(run_all(make_engine(graph, {"text": "x"}, services=_fixed_reply(reply))))
    assert outputs["ok"] == 0
    assert reason in outputs["reason"]
    assert (outputs["city"], outputs["nights"], outputs["breakfast"]) == ("", 0, False)


def test_parameter_extractor_refuses_reserved_names_and_unknown_types() -> None:
    for parameter, message in (
        ({"name": "__reason", "type": "string"}, "reserved"),
        ({"name": "when", "type": "date"}, "cannot be extracted"),
    ):
        with pytest.raises(GraphValidationError, match=message):
            build(
                [start("t"), node("pe", "parameter-extractor", model=MODEL, query=["start", "t"],
                                  parameters=[{**parameter, "description": "", "required": False}],
                                  reasoning_mode="function_call")],
                [edge("start", "pe")],
            )  # fmt: skip


# --- list-operator ---------------------------------------------------------------------------

FILES = [
    {"type": "document", "transfer_method": "remote_url", "url": "http://f/b.pdf", "size": 30},
    {"type": "image", "transfer_method": "remote_url", "url": "http://f/a.png", "size": 10},
    {"type": "image", "transfer_method": "remote_url", "url": "http://f/c.jpg", "size": 20},
]


def _run_list(values: Any, **settings: Any) -> dict[str, Any]:
    graph = build(
        [
            start(),
            probe("src", output=values),
            node("lo", "list-operator", variable=["src", "value"], **settings),
            end(result=["lo", "result"], first=["lo", "first_record"], last=["lo", "last_record"]),
        ],
        [edge("start", "src"), edge("src", "lo"), edge("lo", "end")],
    )
    return _succeeded(run_all(make_engine(graph)))


def test_list_operator_filters_extracts_orders_and_limits() -> None:
    numbers = [5, 3, 9, 1, 7]
    kept = _run_list(numbers, filter_by={"enabled": True, "conditions": [
        {"key": "", "comparison_operator": ">", "value": "2"}]})  # fmt: skip
    assert kept["result"] == [5, 3, 9, 7]
    ordered = _run_list(
        numbers,
        order_by={"enabled": True, "key": "", "value": "desc"},
        limit={"enabled": True, "size": 2},
    )
    assert ordered == {"result": [9, 7], "first": 9, "last": 7}
    gaps = _run_list([2, None, 1], order_by={"enabled": True, "key": "", "value": "desc"})
    assert gaps["result"] == [2, 1, None]
    second = _run_list(["a", "b", "c"], extract_by={"enabled": True, "serial": "2"})
    assert second == {"result": ["b"], "first": "b", "last": "b"}
    empty = _run_list([], filter_by={"enabled": True, "conditions": []})
    assert empty == {"result": [], "first": None, "last": None}


def test_list_operator_on_files_uses_file_attributes() -> None:
    images = _run_list(
        FILES,
        filter_by={"enabled": True, "conditions": [
            {"key": "type", "comparison_operator": "in", "value": ["image"]}]},
        order_by={"enabled": True, "key": "size", "value": "asc"},
    )  # fmt: skip
    assert [f["url"] for f in images["result"]] == ["http://f/a.png", "http://f/c.jpg"]
    pdfs = _run_list(FILES, filter_by={"enabled": True, "conditions": [
        {"key": "extension", "comparison_operator": "is", "value": "pdf"}]})  # fmt: skip
    assert pdfs["first"] == FILES[0]


def test_list_operator_fails_clearly() -> None:
    graph = build(
        [start(), probe("src", output=["a"]),
         node("lo", "list-operator", variable=["src", "value"],
              extract_by={"enabled": True, "serial": "4"}), end(r=["lo", "result"])],
        [edge("start", "src"), edge("src", "lo"), edge("lo", "end")],
    )  # fmt: skip
    last = run_all(make_engine(graph))[-1]
    assert isinstance(last, GraphRunFailedEvent)
    assert "cannot extract item 4 of 1" in last.error
    with pytest.raises(GraphValidationError, match="key 'colour'"):
        build([start(), node("lo", "list-operator", variable=["start", "x"], filter_by={
            "enabled": True, "conditions": [{"key": "colour", "comparison_operator": "is"}]})],
              [edge("start", "lo")])  # fmt: skip


# --- document-extractor ----------------------------------------------------------------------


def _pdf(text: str) -> bytes:
    """A one-page PDF showing ``text`` (built by hand: pypdf reads, it does not typeset)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def _docx() -> bytes:
    document = docx.Document()
    document.add_paragraph("Quarterly report")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "region", "sales"
    table.cell(1, 0).text, table.cell(1, 1).text = "north", "12"
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def _inline(name: str, data: bytes) -> dict[str, Any]:
    return {
        "type": "document",
        "transfer_method": "local_file",
        "filename": name,
        "content_base64": base64.b64encode(data).decode(),
    }


def test_document_extractor_reads_each_format() -> None:
    assert extract_text(b"plain words", ".txt") == "plain words"
    assert extract_text(b"# Title\n\nbody", ".md") == "# Title\n\nbody"
    html = b"<html><head><style>p{}</style></head><body><h1>Hi</h1><p>one <b>two</b></p>"
    assert extract_text(html, ".html") == "Hi\none two"
    assert csv_markdown("a,b\n1,2\n") == "| a | b |\n| --- | --- |\n| 1 | 2 |"
    assert extract_text(_pdf("Hello PDF"), ".pdf") == "Hello PDF"
    assert extract_text(_docx(), ".docx") == (
        "Quarterly report\n| region | sales |\n| --- | --- |\n| north | 12 |"
    )
    assert html_text("<script>x()</script>text") == "text"


def test_document_extractor_node_over_a_file_list() -> None:
    graph = build(
        [
            node("start", "start", variables=[{"variable": "docs", "type": "file-list"}]),
            node("de", "document-extractor", variable_selector=["start", "docs"],
                 is_array_file=True),
            end(text=["de", "text"]),
        ],
        [edge("start", "de"), edge("de", "end")],
    )  # fmt: skip
    files = [
        _inline("notes.csv", b"k,v\nx,1\n"),
        _inline("report.pdf", _pdf("Page text")),
        {"filename": "a.txt", "content": "inline text"},
    ]
    outputs = _succeeded(run_all(make_engine(graph, {"docs": files})))
    assert outputs["text"] == ["| k | v |\n| --- | --- |\n| x | 1 |", "Page text", "inline text"]


def test_document_extractor_refuses_unknown_formats_by_name() -> None:
    graph = build(
        [
            node("start", "start", variables=[{"variable": "doc", "type": "file"}]),
            node("de", "document-extractor", variable_selector=["start", "doc"]),
            end(text=["de", "text"]),
        ],
        [edge("start", "de"), edge("de", "end")],
    )
    last = run_all(make_engine(graph, {"doc": _inline("song.mp3", b"ID3")}))[-1]
    assert isinstance(last, GraphRunFailedEvent)
    assert "cannot read song.mp3" in last.error


# --- loop ------------------------------------------------------------------------------------


def _in_loop(node_id: str, node_type: str, loop: str = "loop", **data: Any) -> dict[str, Any]:
    return {
        "id": node_id,
        "parentId": loop,
        "data": {"type": node_type, "title": node_id, "isInLoop": True, "loop_id": loop, **data},
    }


def _loop_graph(count: int, breaks: list[dict[str, Any]], end_node: bool = False) -> Graph:
    body = [
        _in_loop("ls", "loop-start"),
        _in_loop("add", "assigner", version="2", items=[
            {"variable_selector": ["loop", "total"], "operation": "+=", "input_type": "constant",
             "value": 5},
            {"variable_selector": ["loop", "seen"], "operation": "append",
             "input_type": "variable", "value": ["loop", "total"]},
        ]),
    ]  # fmt: skip
    edges = [edge("start", "loop"), edge("loop", "end"), edge("ls", "add")]
    if end_node:
        body.append(_in_loop("stop", "loop-end"))
        edges.append(edge("add", "stop"))
    return build(
        [
            start(),
            node("loop", "loop", loop_count=count, start_node_id="ls", logical_operator="and",
                 break_conditions=breaks, loop_variables=[
                     {"label": "total", "var_type": "number", "value_type": "constant",
                      "value": "0"},
                     {"label": "seen", "var_type": "array[number]", "value_type": "constant",
                      "value": "[]"},
                 ]),
            *body,
            end(total=["loop", "total"], seen=["loop", "seen"], rounds=["loop", "loop_round"]),
        ],
        edges,
    )  # fmt: skip


def test_loop_runs_until_its_break_condition_with_loop_variables() -> None:
    breaks = [{"variable_selector": ["loop", "total"], "comparison_operator": "≥", "value": "15"}]
    events = run_all(make_engine(_loop_graph(10, breaks)))
    assert _succeeded(events) == {"total": 15, "seen": [5, 10, 15], "rounds": 3}
    loop_events = [e for e in events if isinstance(e, LoopRunStartedEvent | LoopRunNextEvent
                                                   | LoopRunSucceededEvent)]  # fmt: skip
    assert [type(e).__name__ for e in loop_events] == [
        "LoopRunStartedEvent",
        "LoopRunNextEvent",
        "LoopRunNextEvent",
        "LoopRunSucceededEvent",
    ]
    assert [e.index for e in loop_events if isinstance(e, LoopRunNextEvent)] == [1, 2]
    done = loop_events[-1]
    assert isinstance(done, LoopRunSucceededEvent)
    assert done.metadata["completed_reason"] == "loop_break"
    queued = [to_queue_event(e) for e in loop_events]
    assert [q.event if q else None for q in queued] == [
        "loop_start",
        "loop_next",
        "loop_next",
        "loop_completed",
    ]


def test_loop_stops_at_its_count_at_a_loop_end_node_or_before_the_first_round() -> None:
    assert _succeeded(run_all(make_engine(_loop_graph(2, [])))) == {
        "total": 10, "seen": [5, 10], "rounds": 2}  # fmt: skip
    assert _succeeded(run_all(make_engine(_loop_graph(5, [], end_node=True)))) == {
        "total": 5, "seen": [5], "rounds": 1}  # fmt: skip
    already = [{"variable_selector": ["loop", "total"], "comparison_operator": "=", "value": "0"}]
    assert _succeeded(run_all(make_engine(_loop_graph(5, already)))) == {
        "total": 0, "seen": [], "rounds": 0}  # fmt: skip


# --- the older variable-assigner type --------------------------------------------------------


def test_older_variable_assigner_type_joins_branches() -> None:
    graph = build(
        [
            start("pick"),
            node("if", "if-else", conditions=[{"variable_selector": ["start", "pick"],
                                               "comparison_operator": "is", "value": "a"}]),
            node("ta", "template-transform", template="from a", variables=[]),
            node("tb", "template-transform", template="from b", variables=[]),
            node("va", "variable-assigner", output_type="string",
                 variables=[["ta", "output"], ["tb", "output"]]),
            end(out=["va", "output"]),
        ],
        [edge("start", "if"), edge("if", "ta", "true"), edge("if", "tb", "false"),
         edge("ta", "va"), edge("tb", "va"), edge("va", "end")],
    )  # fmt: skip
    assert _succeeded(run_all(make_engine(graph, {"pick": "a"}))) == {"out": "from a"}
    assert _succeeded(run_all(make_engine(graph, {"pick": "b"}))) == {"out": "from b"}


def test_classifier_and_extractor_send_images_with_vision_or_refuse_clearly() -> None:
    image = {"type": "image", "transfer_method": "remote_url", "url": "http://f/cat.png"}
    graph = build(
        [
            start(),
            node("qc", "question-classifier", query_variable_selector=["sys", "query"],
                 model=MODEL, classes=[{"id": "1", "name": "cats"}, {"id": "2", "name": "dogs"}],
                 vision={"enabled": True, "configs": {"variable_selector": ["sys", "files"]}}),
            node("pe", "parameter-extractor", model=MODEL, query=["sys", "query"],
                 reasoning_mode="prompt", vision={"enabled": True}, parameters=[
                     {"name": "animal", "type": "string", "description": "", "required": True}]),
            end(c=["qc", "class_name"], a=["pe", "animal"]),
        ],
        [edge("start", "qc"), edge("qc", "pe", "1"), edge("qc", "pe", "2"), edge("pe", "end")],
    )  # fmt: skip

    def run(vision: bool) -> list[GraphEngineEvent]:
        services = create_services(
            llm=LLMSettings(default=LLMProviderConfig(kind="offline", token_delay=0,
                                                      vision=vision)))  # fmt: skip
        engine = make_engine(graph, query="animal: dogs", services=services)
        engine.pool.add(("sys", "files"), [image])
        return run_all(engine)

    events = run(True)
    assert _succeeded(events) == {"c": "dogs", "a": "dogs"}
    prompts = [e.process_data["prompts"] for e in events
               if isinstance(e, NodeRunSucceededEvent) and e.node_id in ("qc", "pe")]  # fmt: skip
    assert [p[-1]["files"] for p in prompts] == [["http://f/cat.png"], ["http://f/cat.png"]]
    refused = run(False)[-1]
    assert isinstance(refused, GraphRunFailedEvent)
    assert "configured without vision support" in refused.error
