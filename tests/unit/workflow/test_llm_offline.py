"""The offline provider and provider choice per node."""

from __future__ import annotations

from relay.workflow import ChatMessage, LLMProviderConfig, LLMProviders, LLMSettings, StopToken
from relay.workflow.graph import NodeConfig
from relay.workflow.llm.base import ChatRequest
from relay.workflow.llm.offline import OfflineProvider, offline_reply
from relay.workflow.llm.openai_compatible import OpenAICompatibleProvider
from relay.workflow.nodes.base import RunInfo
from relay.workflow.nodes.llm import LLMNode
from relay.workflow.variables import VariablePool

from .helpers import offline_services


def _request(text: str) -> ChatRequest:
    return ChatRequest("m", (ChatMessage("system", "be brief"), ChatMessage("user", text)))


def test_offline_reply_is_deterministic_and_labelled() -> None:
    first = offline_reply(_request("what is relay"))
    assert first == offline_reply(_request("what is relay"))
    assert first != offline_reply(_request("what is relay?"))
    assert first.startswith("[offline reply ")
    assert first.endswith("] what is relay")
    provider = OfflineProvider(LLMProviderConfig(token_delay=0))
    deltas = list(provider.stream(_request("what is relay"), StopToken()))
    assert "".join(d.text for d in deltas) == first
    usage = deltas[-1].usage
    assert usage is not None
    assert usage.completion_tokens == len(deltas) - 1
    assert provider.label == "offline"


def test_provider_is_chosen_per_node_then_provider_then_default() -> None:
    special = LLMProviderConfig(kind="offline", reply="fixed")
    remote = LLMProviderConfig(kind="openai", base_url="http://127.0.0.1:9/v1", model="local")
    providers = LLMProviders(LLMSettings(nodes={"n1": special}, providers={"deepseek": remote}))
    first, model = providers.provider_for("n1", "deepseek", "deepseek-chat")
    assert isinstance(first, OfflineProvider)
    assert model == "deepseek-chat"
    second, model = providers.provider_for("n2", "langgenius/deepseek/deepseek", "deepseek-chat")
    assert isinstance(second, OpenAICompatibleProvider)
    assert model == "local"
    third, _ = providers.provider_for("n3", "openai", "gpt-4o")
    assert third.label == "offline"
    providers.close()


def test_memory_appends_history_and_query() -> None:
    node = LLMNode(
        NodeConfig(
            "llm",
            "llm",
            data={
                "model": {"provider": "x", "name": "m"},
                "prompt_template": [{"role": "system", "text": "You help."}],
                "memory": {
                    "window": {"enabled": True, "size": 1},
                    "query_prompt_template": "{{#sys.query#}}",
                },
            },
        )
    )
    from relay.workflow.nodes.base import NodeContext
    from relay.workflow.stop import StopToken as Token

    history = (
        ChatMessage("user", "old"),
        ChatMessage("assistant", "older"),
        ChatMessage("user", "recent q"),
        ChatMessage("assistant", "recent a"),
    )
    ctx = NodeContext(
        execution_id="e",
        pool=VariablePool(system={"query": "now?"}),
        services=offline_services(),
        run=RunInfo(chat_history=history),
        stop=Token(),
        event_fields={},
    )
    assert [(m.role, m.content) for m in node.build_messages(ctx)] == [
        ("system", "You help."),
        ("user", "recent q"),
        ("assistant", "recent a"),
        ("user", "now?"),
    ]
