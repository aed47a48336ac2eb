"""The twelve real Dify exports in tests/fixtures/dify_dsl import and run to completion.

LLM nodes use relay's offline provider (fixed replies where the app parses the model's output);
http-request nodes are pointed at a server on 127.0.0.1; code nodes run in the real sandbox.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from relay.workflow import (
    ChatMessage,
    GraphEngineEvent,
    GraphRunSucceededEvent,
    HttpRequestConfig,
    InMemoryKnowledgeIndex,
    LLMProviderConfig,
    LLMSettings,
    NodeRunRetrieverResourceEvent,
    NodeRunStreamChunkEvent,
    NodeRunSucceededEvent,
    RunInfo,
    SystemVariables,
    UnsupportedNodeTypeError,
    WorkflowApp,
    create_engine,
    create_services,
    load_dsl,
)
from relay.workflow.llm.base import ChatRequest
from relay.workflow.llm.offline import offline_reply
from tests.unit.workflow.helpers import trace

from .conftest import require_sandbox_packages
from .servers import LocalServer

FIXTURES = Path(__file__).parents[2] / "fixtures" / "dify_dsl"
NAMES = sorted(p.stem for p in FIXTURES.glob("*.yml"))
OFFLINE = LLMProviderConfig(kind="offline", token_delay=0)


def document(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((FIXTURES / f"{name}.yml").read_text(encoding="utf-8"))
    return loaded


def run(
    app: WorkflowApp,
    inputs: Mapping[str, Any] | None = None,
    *,
    query: str | None = None,
    replies: Mapping[str, str] | None = None,
    knowledge: InMemoryKnowledgeIndex | None = None,
    conversation: Mapping[str, Any] | None = None,
    history: Sequence[ChatMessage] = (),
) -> tuple[list[GraphEngineEvent], Any]:
    nodes = {
        node_id: OFFLINE.model_copy(update={"reply": text})
        for node_id, text in (replies or {}).items()
    }
    services = create_services(
        llm=LLMSettings(default=OFFLINE, nodes=nodes),
        knowledge=knowledge,
        http=HttpRequestConfig(allow_private_addresses=True),
    )
    engine = create_engine(
        app,
        inputs=inputs,
        system=SystemVariables(query=query, user_id="u1", conversation_id="c1"),
        conversation=conversation,
        services=services,
        run_info=RunInfo(tenant_id="t1", app_id="app-1", user_id="u1", chat_history=history),
    )
    return list(engine.run()), engine


def steps(events: Sequence[GraphEngineEvent]) -> list[str]:
    """The trace without stream chunks (their text is checked separately)."""
    return [x for x in trace(events) if not x.startswith("NodeRunStreamChunk")]


def ran(*node_ids: str) -> list[str]:
    return [f"NodeRun{kind} {n}" for n in node_ids for kind in ("Started", "Succeeded")]


def streamed(events: Sequence[GraphEngineEvent]) -> str:
    return "".join(e.chunk for e in events if isinstance(e, NodeRunStreamChunkEvent))


def outputs(events: Sequence[GraphEngineEvent]) -> dict[str, Any]:
    final = events[-1]
    assert isinstance(final, GraphRunSucceededEvent), final
    return final.outputs


def answer_text(app: WorkflowApp, node_id: str) -> str:
    """The template of an answer node, as exported."""
    return str(app.graph.nodes[node_id].data["answer"])


def node_output(events: Sequence[GraphEngineEvent], node_id: str) -> dict[str, Any]:
    done = [e for e in events if isinstance(e, NodeRunSucceededEvent) and e.node_id == node_id]
    return done[-1].outputs


def test_all_twelve_exports_are_present_and_import() -> None:
    assert len(NAMES) == 12
    for name in NAMES:
        app = load_dsl((FIXTURES / f"{name}.yml").read_text(encoding="utf-8"))
        assert app.mode in ("workflow", "advanced-chat")
        assert app.graph.nodes


def test_seo_slug_generator() -> None:
    events, _ = run(load_dsl(document("seo-slug-generator")), {"title": "How Relay Streams Events"})
    assert steps(events) == [
        "GraphRunStarted",
        *ran("1721110595591", "1721110597868", "1721110634700"),
        "GraphRunSucceeded",
    ]
    text = node_output(events, "1721110597868")["text"]
    assert text.startswith("[offline reply ")
    assert text.endswith("How Relay Streams Events")
    assert outputs(events) == {"output": text}
    assert streamed(events) == text  # streamed through the end node as it was generated


def test_headline_writer() -> None:
    events, _ = run(load_dsl(document("headline-writer")), {"subject": "AI", "description": "短"})
    assert steps(events) == [
        "GraphRunStarted",
        *ran("1719024828554", "1719024838077", "1719028193404", "1719028267819"),
        "GraphRunSucceeded",
    ]
    text = node_output(events, "1719024838077")["text"]
    assert outputs(events) == {"title_list": text.split("\n")}


def test_couplet_generator() -> None:
    reply = 'Answer: {"top": "春风送暖入屋来", "bottom": "福气盈门迎春到", "banner": "万象更新"}'
    events, _ = run(
        load_dsl(document("couplet-generator")),
        {"theme": "春节", "count": "七言"},
        replies={"1737014291474": reply},
    )
    assert steps(events) == [
        "GraphRunStarted",
        *ran("1737014287710", "1737014291474", "1737014565681", "1737015751556", "1737014987145"),
        "GraphRunSucceeded",
    ]
    assert node_output(events, "1737014565681") == {
        "banner": "万象更新",
        "reversed_banner": "新更象万",
        "top": "春风送暖入屋来",
        "bottom": "福气盈门迎春到",
    }
    html = outputs(events)["output"]
    assert html.startswith("<div")
    assert "新更象万" in html
    assert "福气盈门迎春到" in html


def test_json_repair() -> None:
    require_sandbox_packages("json_repair")
    events, _ = run(load_dsl(document("json-repair")), {"llm_string": '{"a": 1, "b": [1, 2'})
    assert steps(events) == [
        "GraphRunStarted",
        *ran("1732007415808", "1732007419308", "1732007423290"),
        "GraphRunSucceeded",
    ]
    assert json.loads(outputs(events)["output"]) == {"a": 1, "b": [1, 2]}


def test_file_read() -> None:
    require_sandbox_packages("pandas")
    upload = {
        "type": "document",
        "transfer_method": "local_file",
        "filename": "data.csv",
        "extension": ".csv",
        "mime_type": "text/csv",
        "size": 2048,
        "related_id": "f1",
    }
    events, _ = run(load_dsl(document("file-read")), {"File": upload})
    assert steps(events) == [
        "GraphRunStarted",
        *ran("1733304372042", "1733304400929", "1733308511344", "1733304425429"),
        "GraphRunSucceeded",
    ]
    step = next(
        e for e in events if isinstance(e, NodeRunSucceededEvent) and e.node_id == "1733304400929"
    )
    assert step.inputs == {"filesize": 2048}  # [start, File, size]: a selector into the file
    # The app looks for the upload under /upload_files (Dify's sandbox mount); relay has none,
    # so the app reports its own "not found" message through pandas, as it would in Dify.
    assert node_output(events, "1733304400929") == {"file_path": "None"}
    assert outputs(events)["output"].startswith("错误: ")


TRANSLATION_INPUTS = {"target_lang": "French", "source_lang": "English", "source_text": "Hi there"}


@pytest.mark.parametrize(
    ("country", "taken", "skipped"),
    [(None, "1721118559807", "1721118668192"), ("Canada", "1721118668192", "1721118559807")],
)
def test_translation_workflow(country: str | None, taken: str, skipped: str) -> None:
    inputs = {**TRANSLATION_INPUTS, **({"country": country} if country else {})}
    events, _ = run(load_dsl(document("translation-workflow")), inputs)
    assert steps(events) == [
        "GraphRunStarted",
        *ran(
            "1721117927142",
            "1721117961155",
            "1721118545228",
            taken,
            "1721118847307",
            "1721118907775",
            "1721119092752",
        ),
        "GraphRunSucceeded",
    ]
    assert skipped not in " ".join(trace(events))
    suggestions = node_output(events, taken)["text"]
    assert node_output(events, "1721118847307") == {"output": suggestions}
    final = node_output(events, "1721118907775")["text"]
    assert outputs(events) == {"output": final}
    assert streamed(events) == final


OUTLINE = (
    "```json\n"
    '[{"chapter": "第1章", "title": "入门", "contents": ["1.1 安装", "1.2 第一个程序"]},'
    ' {"chapter": "第2章", "title": "进阶", "contents": ["2.1 函数"]}]'
    "\n```"
)


def test_course_demo_iteration() -> None:
    app = load_dsl(document("course-demo-iteration"))
    events, _ = run(app, {"course_name": "Python"}, replies={"1728198088794": OUTLINE})
    body = ["1728217105363start", "1728218846720", "1728218323079", "1728463823248"]
    expected = [
        "GraphRunStarted",
        *ran("1728198077941", "1728198088794", "1728203511475"),
        "NodeRunStarted 1728217105363",
        "IterationRunStarted 1728217105363",
    ]
    for index in range(3):
        expected += [f"IterationRunNext 1728217105363 {index}", *ran(*body)]
    expected += [
        "IterationRunSucceeded 1728217105363",
        "NodeRunSucceeded 1728217105363",
        *ran("1728198201864"),
        "GraphRunSucceeded",
    ]
    assert steps(events) == expected
    course = outputs(events)["course"]
    assert outputs(events)["course_name"] == "Python"
    assert [c["info"] for c in course] == [
        {"chapter": "第1章", "title": "入门", "subtitle": "1.1 安装"},
        {"chapter": "第1章", "title": "入门", "subtitle": "1.2 第一个程序"},
        {"chapter": "第2章", "title": "进阶", "subtitle": "2.1 函数"},
    ]
    assert all(c["course"].startswith("[offline reply ") for c in course)
    # The inner llm saw the item's title and subtitle in its prompt (echoed by the offline reply).
    assert "进阶 2.1 函数 " in course[2]["course"]


def test_whole_book_translation() -> None:
    text = " ".join(f"sentence{i}." for i in range(1400))  # ~20k characters: three chunks
    events, _ = run(load_dsl(document("whole-book-translation")), {"input_text": text})
    body = [
        "1717916955547start0",
        "1717916961837",
        "1717916977413",
        "1717916984996",
        "1717916991709",
    ]
    chunks = node_output(events, "1717916867969")["chunks"]
    assert len(chunks) == 3
    expected = [
        "GraphRunStarted",
        *ran("1711067409646", "1717916867969"),
        "NodeRunStarted 1717916955547",
        "IterationRunStarted 1717916955547",
    ]
    for index in range(3):
        expected += [f"IterationRunNext 1717916955547 {index}", *ran(*body)]
    expected += [
        "IterationRunSucceeded 1717916955547",
        "NodeRunSucceeded 1717916955547",
        *ran("1717917057450", "1711068257370"),
        "GraphRunSucceeded",
    ]
    assert steps(events) == expected
    translated = node_output(events, "1717916955547")["output"]
    assert len(translated) == 3
    assert outputs(events) == {"final": " ".join(translated)}


def test_artifact_chat_with_memory() -> None:
    history = [ChatMessage("user", "hello"), ChatMessage("assistant", "hi, how can I help?")]
    events, _ = run(load_dsl(document("artifact-chat")), query="draw a cat", history=history)
    assert steps(events) == [
        "GraphRunStarted",
        *ran("1745404962666", "llm", "answer"),
        "GraphRunSucceeded",
    ]
    llm = next(e for e in events if isinstance(e, NodeRunSucceededEvent) and e.node_id == "llm")
    assert llm.process_data["prompts"] == [
        {"role": "system", "text": "你是一个小助手"},
        {"role": "user", "text": "hello"},
        {"role": "assistant", "text": "hi, how can I help?"},
        {"role": "user", "text": "draw a cat"},
    ]
    request = ChatRequest(
        "deepseek-v3-250324",
        tuple(ChatMessage(p["role"], p["text"]) for p in llm.process_data["prompts"]),
    )
    assert outputs(events) == {"answer": offline_reply(request)}
    assert streamed(events) == offline_reply(request)


def test_form_chat_demo_login_succeeds() -> None:
    require_sandbox_packages("requests")
    app = load_dsl(document("form-chat-demo"))
    query = '{"username": "svcvit", "password": "secret"}'
    events, engine = run(app, query=query, conversation={"user_token": ""})
    assert steps(events) == [
        "GraphRunStarted",
        *ran(
            "1729841263487",
            "1731378918101",
            "1731378644337",
            "1731379291700",
            "1731379076735",
            "1731379313752",
        ),
        "GraphRunSucceeded",
    ]
    assert outputs(events) == {"answer": answer_text(app, "1731379313752")}
    assert engine.pool.conversation_variables() == {"user_token": "user_token_test"}
    assert engine.pool.get(["env", "login"]) == 0


def test_form_chat_demo_login_fails_shows_the_form() -> None:
    require_sandbox_packages("requests")
    app = load_dsl(document("form-chat-demo"))
    events, engine = run(
        app,
        query='{"username": "x"}',
        conversation={"user_token": ""},
    )
    assert steps(events) == [
        "GraphRunStarted",
        *ran(
            "1729841263487",
            "1731378918101",
            "1731378644337",
            "1731379291700",
            "1730163641212",
            "1731378296917",
        ),
        "GraphRunSucceeded",
    ]
    answer = outputs(events)["answer"]
    form = node_output(events, "1730163641212")["output"]
    assert form.startswith('<form data-format="json">')
    assert answer == answer_text(app, "1731378296917").replace("{{#1730163641212.output#}}", form)
    assert streamed(events) == answer
    assert engine.pool.conversation_variables() == {"user_token": ""}


def test_form_chat_demo_logged_in_user_chats_with_the_llm() -> None:
    events, _ = run(
        load_dsl(document("form-chat-demo")),
        query="tell me a joke",
        conversation={"user_token": "user_token_test"},
    )
    assert steps(events) == [
        "GraphRunStarted",
        *ran("1729841263487", "1731378918101", "1731378486318", "1731378500668"),
        "GraphRunSucceeded",
    ]
    answer = outputs(events)["answer"]
    assert answer.startswith("[offline reply ")
    assert answer.endswith("tell me a joke")


def test_knowledge_base_chat() -> None:
    index = InMemoryKnowledgeIndex()
    dataset = "2516f4a8-9329-4845-a914-7965090ee2e2"
    index.add("t1", dataset, "Dify 工作流支持迭代节点和并行分支。", document_name="workflow.md")
    index.add(
        "t1", dataset, "知识库检索返回带图片的段落 ![图](https://img/1.png)", document_name="kb.md"
    )
    index.add("t1", "other-dataset", "工作流 unrelated dataset", document_name="x.md")
    events, _ = run(
        load_dsl(document("knowledge-base-chat")), query="工作流支持迭代吗", knowledge=index
    )
    assert steps(events) == [
        "GraphRunStarted",
        "NodeRunStarted 1743994826325",
        "NodeRunSucceeded 1743994826325",
        "NodeRunStarted 1743994832383",
        "NodeRunRetrieverResource 1743994832383",
        "NodeRunSucceeded 1743994832383",
        *ran("1743994891832", "answer"),
        "GraphRunSucceeded",
    ]
    resources = next(e for e in events if isinstance(e, NodeRunRetrieverResourceEvent)).resources
    assert resources[0]["document_name"] == "workflow.md"
    assert all(r["dataset_id"] == dataset for r in resources)
    llm = next(
        e for e in events if isinstance(e, NodeRunSucceededEvent) and e.node_id == "1743994891832"
    )
    assert "Dify 工作流支持迭代节点和并行分支。" in llm.process_data["prompts"][0]["text"]
    assert outputs(events)["answer"] == node_output(events, "1743994891832")["text"]


def test_chart_demo(api_server: LocalServer) -> None:
    data = document("chart-demo")
    for raw in data["workflow"]["graph"]["nodes"]:
        if raw["data"]["type"] == "http-request":
            raw["data"]["url"] = f"{api_server.url}/api/climate?stationid=58367"
    events, _ = run(load_dsl(data), query="show the chart")
    assert steps(events) == [
        "GraphRunStarted",
        *ran("1731568135443", "1731568176573", "1731568257888", "answer"),
        "GraphRunSucceeded",
    ]
    assert node_output(events, "1731568176573")["status_code"] == 200
    answer = outputs(events)["answer"]
    assert answer.startswith("```echarts\n")
    assert answer.endswith("\n```")
    chart = json.loads(answer.removeprefix("```echarts\n").removesuffix("\n```"))
    assert chart["title"]["subtext"] == "1991年-2020年月平均气温和降水"
    assert chart["xAxis"]["data"][0] == "1月"
    assert len(chart["series"][0]["data"]) == 12
    assert streamed(events) == answer


@pytest.mark.parametrize("kind", ["datasource", "knowledge-index"])
def test_real_export_with_an_unsupported_node_names_it(kind: str) -> None:
    data = document("couplet-generator")
    for raw in data["workflow"]["graph"]["nodes"]:
        if raw["id"] == "1737014565681":
            raw["data"]["type"] = kind
    with pytest.raises(UnsupportedNodeTypeError) as caught:
        load_dsl(data)
    assert caught.value.message.startswith(
        f"node '1737014565681' (\"代码执行\") has type '{kind}', which relay does not support"
    )
