"""The offline provider's deterministic tool use, so agent nodes run in tests and demos.

The plan comes from the prompt: the tools the user's query names (in the order it names them),
or every offered tool when it names none, each called once, one per round. Arguments are the
JSON object written right after the tool's name in the query (``current_time {"timezone":
"Asia/Tokyo"}``), else the query itself for the tool's first required text parameter (none
when it requires none). Once
every planned tool has answered (or no tool is offered any more), the reply sums up what the
tools returned. ``native`` requests get the calls as tool calls; ``react`` requests get the
``Thought / Action / Final Answer`` text a ReAct prompt asks a model for.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from relay.workflow.llm.base import ChatMessage, ChatRequest, FunctionCall, FunctionSpec

OBSERVATION = "Observation:"
_SUMMARY_CHARS = 200


def agent_reply(request: ChatRequest) -> tuple[str, tuple[FunctionCall, ...]]:
    """The text and tool calls the offline provider answers a request that offers tools with."""
    messages = request.messages
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
    query = messages[last_user].content if last_user >= 0 else ""
    after = messages[last_user + 1 :]
    results = _results(after, request.tool_mode)
    plan = _plan(query, request.tools)
    if request.tools and len(results) < len(plan):
        tool = plan[len(results)]
        arguments = _arguments(query, tool)
        if request.tool_mode == "react":
            action = json.dumps(
                {"action": tool.name, "action_input": arguments}, ensure_ascii=False
            )
            return f"Thought: I should use {tool.name}.\nAction:\n```\n{action}\n```", ()
        call_id = f"call_{len(results) + 1}"
        return "", (FunctionCall(call_id, tool.name, json.dumps(arguments, ensure_ascii=False)),)
    summary = "; ".join(f"{name}: {_short(text)}" for name, text in results)
    answer = f"[offline agent reply] {summary or _short(query)}"
    if request.tool_mode == "react" and request.tools:
        return f"Thought: I know the final answer.\nFinal Answer: {answer}", ()
    return answer, ()


def _plan(query: str, tools: Sequence[FunctionSpec]) -> list[FunctionSpec]:
    named = [
        (match.start(), tool)
        for tool in tools
        if (match := re.search(rf"(?<![\w-]){re.escape(tool.name)}(?![\w-])", query))
    ]
    return [tool for _, tool in sorted(named, key=lambda pair: pair[0])] or list(tools)


def _arguments(query: str, tool: FunctionSpec) -> dict[str, Any]:
    match = re.search(rf"(?<![\w-]){re.escape(tool.name)}\s*\(?\s*(\{{)", query)
    if match:
        try:
            found, _ = json.JSONDecoder().raw_decode(query[match.start(1) :])
        except json.JSONDecodeError:
            found = None
        if isinstance(found, dict):
            return found
    properties: Mapping[str, Any] = tool.parameters.get("properties") or {}
    required = [str(name) for name in tool.parameters.get("required") or []]
    texts = [n for n in required if _is_text(properties.get(n))]
    return {texts[0]: query} if texts else {}


def _is_text(schema: Any) -> bool:
    return not isinstance(schema, Mapping) or schema.get("type", "string") == "string"


def _results(after: Sequence[ChatMessage], mode: str) -> list[tuple[str, str]]:
    """``(tool, what it returned)`` for every tool call answered since the query."""
    if mode == "react":
        found: list[tuple[str, str]] = []
        for message in after:
            if message.role != "assistant":
                continue
            actions = re.findall(r'"action"\s*:\s*"([^"]+)"', message.content)
            observations = message.content.split(OBSERVATION)[1:]
            for index, observation in enumerate(observations):
                name = actions[index] if index < len(actions) else "tool"
                found.append((name, observation.split("\nThought:")[0].strip()))
        return found
    names = {c.id: c.name for m in after for c in m.tool_calls}
    return [(names.get(m.tool_call_id, "tool"), m.content) for m in after if m.role == "tool"]


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _SUMMARY_CHARS else flat[:_SUMMARY_CHARS] + " …"
