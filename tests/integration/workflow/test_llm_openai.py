"""The llm node through the OpenAI-compatible provider, against a streaming server on loopback."""

from __future__ import annotations

from pathlib import Path

from relay.workflow import (
    GraphEngine,
    GraphRunAbortedEvent,
    GraphRunFailedEvent,
    GraphRunSucceededEvent,
    LLMProviderConfig,
    LLMSettings,
    NodeRunStreamChunkEvent,
    NodeRunSucceededEvent,
    RunInfo,
    SystemVariables,
    create_engine,
    create_services,
    graph_from_dict,
    load_dsl,
)
from relay.workflow.events import GraphEngineEvent
from tests.unit.workflow.helpers import trace

from .servers import OpenAIServer

SEO = (Path(__file__).parents[2] / "fixtures" / "dify_dsl" / "seo-slug-generator.yml").read_text()
LLM_ID = "1721110597868"


def _engine(server: OpenAIServer, key: str = "test-key") -> GraphEngine:
    remote = LLMProviderConfig(
        kind="openai", base_url=server.base_url, api_key=key, model="local-model"
    )
    services = create_services(llm=LLMSettings(providers={"deepseek": remote}))
    return create_engine(
        load_dsl(SEO),
        inputs={"title": "Streaming Events Over SSE"},
        services=services,
        run_info=RunInfo(tenant_id="t1"),
    )


def test_streams_through_the_openai_compatible_provider(openai_server: OpenAIServer) -> None:
    openai_server.reply = lambda messages: "streaming-events-over-sse"
    events: list[GraphEngineEvent] = list(_engine(openai_server).run())
    chunks = [e.chunk for e in events if isinstance(e, NodeRunStreamChunkEvent)]
    assert chunks == ["stre", "amin", "g-ev", "ents", "-ove", "r-ss", "e", ""]
    assert events[-1] == GraphRunSucceededEvent(outputs={"output": "streaming-events-over-sse"})
    llm = next(e for e in events if isinstance(e, NodeRunSucceededEvent) and e.node_id == LLM_ID)
    assert llm.metadata == {
        "prompt_tokens": 11,
        "completion_tokens": 7,
        "total_tokens": 18,
        "provider": "openai",
        "model": "local-model",
    }
    assert llm.outputs["finish_reason"] == "stop"
    sent = openai_server.requests[0]
    assert sent["auth"] == "Bearer test-key"
    assert sent["json"]["model"] == "local-model"
    assert sent["json"]["stream"] is True
    assert sent["json"]["temperature"] == 1
    assert [m["role"] for m in sent["json"]["messages"]] == ["system", "user"]
    assert sent["json"]["messages"][1]["content"] == "Streaming Events Over SSE"


def test_usage_is_counted_when_the_server_sends_none(openai_server: OpenAIServer) -> None:
    openai_server.with_usage = False
    events = list(_engine(openai_server).run())
    llm = next(e for e in events if isinstance(e, NodeRunSucceededEvent) and e.node_id == LLM_ID)
    assert llm.metadata["completion_tokens"] > 0


def test_rejected_key_fails_the_node_clearly(openai_server: OpenAIServer) -> None:
    events = list(_engine(openai_server, key="wrong").run())
    assert trace(events)[-2:] == [f"NodeRunFailed {LLM_ID}", "GraphRunFailed"]
    assert events[-1] == GraphRunFailedEvent(
        error='LLM API returned HTTP 401: {"error": {"message": "bad key"}}', exceptions_count=0
    )


def test_abort_mid_stream(openai_server: OpenAIServer) -> None:
    # The server sends three pieces, then holds the stream until the test has stopped the run.
    openai_server.reply = lambda messages: "x" * 80
    openai_server.hold_after = 3
    engine = _engine(openai_server)
    events: list[GraphEngineEvent] = []
    for event in engine.run():
        events.append(event)
        if sum(isinstance(e, NodeRunStreamChunkEvent) for e in events) == 3:
            engine.stop("user stop")
            openai_server.release.set()
    assert trace(events)[-5:] == [
        f"NodeRunStarted {LLM_ID}",
        "NodeRunStreamChunk 1721110634700 'xxxx'",
        "NodeRunStreamChunk 1721110634700 'xxxx'",
        "NodeRunStreamChunk 1721110634700 'xxxx'",
        "GraphRunAborted",
    ]
    assert events[-1] == GraphRunAbortedEvent(reason="user stop", outputs={})


def test_vision_sends_images_as_content_parts(openai_server: OpenAIServer) -> None:
    openai_server.reply = lambda messages: "a cat"
    image = {"type": "image", "transfer_method": "remote_url", "url": "https://img.test/cat.png"}
    graph = {
        "nodes": [
            {"id": "s", "data": {"type": "start", "title": "S", "variables": []}},
            {"id": "llm", "data": {
                "type": "llm", "title": "L", "model": {"provider": "openai", "name": "gpt-4o"},
                "prompt_template": [{"role": "user", "text": "What is in the picture?"}],
                "vision": {"enabled": True, "configs": {"variable_selector": ["sys", "files"],
                                                        "detail": "high"}}}},
            {"id": "e", "data": {"type": "end", "title": "E", "outputs": [
                {"variable": "text", "value_selector": ["llm", "text"]}]}},
        ],
        "edges": [{"id": "1", "source": "s", "target": "llm"},
                  {"id": "2", "source": "llm", "target": "e"}],
    }  # fmt: skip
    remote = LLMProviderConfig(kind="openai", base_url=openai_server.base_url, api_key="test-key")
    engine = create_engine(
        graph_from_dict(graph),
        system=SystemVariables(files=[image]),
        services=create_services(llm=LLMSettings(default=remote)),
    )
    assert list(engine.run())[-1] == GraphRunSucceededEvent(outputs={"text": "a cat"})
    sent = openai_server.requests[0]["json"]["messages"]
    assert sent == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in the picture?"},
                {"type": "image_url", "image_url": {"url": "https://img.test/cat.png"}},
            ],
        }
    ]
