"""agent: a model that calls tools in rounds until it answers, as Dify's agent node does.

The DSL names a strategy of Dify's built-in agent plugin (``langgenius/agent/agent``):
``function_calling`` (tools go to the model as function tools, calls come back structured) or
``ReAct`` (tools are described in the prompt; the model writes ``Thought / Action`` text and
relay feeds back ``Observation``). Strategies of other plugins fail the node, saying so.
``agent_parameters`` hold ``model``, ``tools`` (any provider a tool node can use: built-in,
API, MCP, workflow-as-tool), ``instruction``, ``query`` and ``maximum_iterations``.

Each round is reported as it happens: :class:`AgentLogEvent` for a round or a tool call
starting and finishing, :class:`AgentThoughtEvent` for a finished round (thought, tools, their
inputs and observations). The answer streams as ``[node_id, text]`` like an llm's reply. The
last round offers no tools, so the model has to answer within ``maximum_iterations`` rounds.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from relay.workflow.errors import NodeError
from relay.workflow.events import AgentLogEvent, AgentThoughtEvent
from relay.workflow.graph import NodeConfig
from relay.workflow.llm.base import (
    ChatMessage,
    ChatRequest,
    FunctionCall,
    FunctionSpec,
    LLMProvider,
    LLMUsage,
)
from relay.workflow.llm.offline import tokenize
from relay.workflow.llm.offline_agent import OBSERVATION
from relay.workflow.nodes.base import (
    Node,
    NodeContext,
    NodeRun,
    NodeRunResult,
    NodeYield,
    StreamChunk,
    parse_data,
)
from relay.workflow.nodes.llm import MemoryConfig, ModelConfig, last_turns
from relay.workflow.tools.base import (
    ToolCall,
    ToolError,
    ToolProvider,
    ToolResult,
    invoke_tool,
    missing_provider,
    short_provider_id,
)
from relay.workflow.variables import Selector, VariablePool, as_selector, template_references

STRATEGIES = {"function_calling": "function_calling", "functioncalling": "function_calling",
              "react": "react"}  # fmt: skip
AGENT_PLUGIN = "agent"  # langgenius/agent/agent, Dify's built-in strategies
DEFAULT_ITERATIONS = 3
MAX_ITERATIONS = 99
_OBSERVATION_CHARS = 8000


class AgentInput(BaseModel):
    """One agent parameter: a constant, a selector (``variable``) or text with references."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["constant", "variable", "mixed"] = "constant"
    value: Any = None


class AgentData(BaseModel):
    """agent node data as Dify exports it."""

    model_config = ConfigDict(extra="ignore")

    agent_strategy_provider_name: str = ""
    agent_strategy_name: str
    agent_strategy_label: str = ""
    agent_parameters: dict[str, AgentInput] = Field(default_factory=dict)
    memory: MemoryConfig | None = None


class AgentTool(BaseModel):
    """A tool the agent may call (an entry of ``agent_parameters.tools.value``)."""

    model_config = ConfigDict(extra="ignore")

    enabled: bool = True
    type: str = "builtin"
    provider_name: str
    tool_name: str
    tool_label: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict)  # {name: {auto: 0|1, value}}
    settings: dict[str, Any] = Field(default_factory=dict)
    schemas: list[dict[str, Any]] = Field(default_factory=list)
    extra: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class _Bound:
    """A tool resolved for this run: its provider, what the model sees, and fixed inputs."""

    tool: AgentTool
    provider: ToolProvider
    spec: FunctionSpec
    fixed: Mapping[str, Any]


class AgentNode(Node):
    """Outputs ``text``, ``files``, ``json`` (what tools returned) and ``usage``."""

    node_type = "agent"

    def __init__(self, config: NodeConfig) -> None:
        super().__init__(config)
        self.data = parse_data(AgentData, config)
        tools = self.data.agent_parameters.get("tools")
        raw = tools.value if tools is not None and isinstance(tools.value, list) else []
        listed = NodeConfig(config.id, config.type, config.title, {"agent_tools": raw})
        self.tools = parse_data(_ToolList, listed).agent_tools
        model = self.data.agent_parameters.get("model")
        self.model = ModelConfig.model_validate(_model_fields(model.value if model else None))

    # --- reading the DSL --------------------------------------------------------------------

    def selectors(self) -> list[Selector]:
        found: list[Selector] = []
        for name in ("instruction", "query"):
            found.extend(_references(self.data.agent_parameters.get(name)))
        for tool in self.tools:
            for setting in tool.parameters.values():
                value = setting.get("value") if isinstance(setting, dict) else None
                if not setting.get("auto", 1) and isinstance(value, dict) and "type" in value:
                    found.extend(_references(AgentInput.model_validate(value)))
        return found

    def declared_outputs(self) -> list[str]:
        return ["text", "files", "json", "usage"]

    @property
    def strategy(self) -> str | None:
        """``function_calling`` or ``react``; None for a strategy relay does not run."""
        provider = self.data.agent_strategy_provider_name
        if provider and short_provider_id(provider) != AGENT_PLUGIN:
            return None
        return STRATEGIES.get(self.data.agent_strategy_name.replace("-", "_").lower())

    def _value(self, name: str, pool: VariablePool) -> Any:
        item = self.data.agent_parameters.get(name)
        return _resolve(item, pool) if item is not None else None

    # --- running ----------------------------------------------------------------------------

    def run(self, ctx: NodeContext) -> NodeRun:
        strategy = self.strategy
        if strategy is None:
            raise NodeError(
                f"agent strategy '{self.data.agent_strategy_name}' of plugin "
                f"'{self.data.agent_strategy_provider_name or '?'}' is not supported: relay runs "
                "the function_calling and ReAct strategies of langgenius/agent/agent"
            )
        pool = ctx.pool
        bound = [self._bind(tool, ctx) for tool in self.tools if tool.enabled]
        limit = _iterations(self._value("maximum_iterations", pool))
        instruction = str(self._value("instruction", pool) or "")
        query = str(self._value("query", pool) or "")
        provider, model_name = ctx.services.llm.provider_for(
            self.id, self.model.provider, self.model.name
        )
        run = _AgentRun(self, ctx, provider, model_name, bound, strategy)
        history = list(ctx.run.chat_history) if self.data.memory is not None else []
        if self.data.memory is not None and self.data.memory.window.enabled:
            history = last_turns(history, self.data.memory.window.size)
        text = yield from run.loop(instruction, history, query, limit)
        usage = {
            "prompt_tokens": run.usage.prompt_tokens,
            "completion_tokens": run.usage.completion_tokens,
            "total_tokens": run.usage.total_tokens,
        }
        return NodeRunResult(
            outputs={"text": text, "files": [], "json": run.json, "usage": usage},
            inputs={"query": query, "instruction": instruction},
            process_data={
                "strategy": strategy,
                "rounds": run.rounds,
                "tool_calls": run.calls,
                "model_provider": self.model.provider,
                "model_name": model_name,
                "provider": provider.label,
            },
            metadata={**usage, "provider": provider.label, "model": model_name,
                      "agent_strategy": strategy},
        )  # fmt: skip

    def _bind(self, tool: AgentTool, ctx: NodeContext) -> _Bound:
        source = ctx.services.tools
        provider = source.provider_for(tool.type, tool.provider_name, ctx.run.tenant_id)
        if provider is None:
            raise ToolError(missing_provider(source, tool.type, tool.provider_name,
                                             tool.tool_name))  # fmt: skip
        fixed: dict[str, Any] = dict(tool.settings)
        for name, setting in tool.parameters.items():
            if isinstance(setting, dict) and not setting.get("auto", 1):
                value = setting.get("value")
                fixed[name] = (
                    _resolve(AgentInput.model_validate(value), ctx.pool)
                    if isinstance(value, dict) and "type" in value
                    else value
                )
        spec = _spec_from_schemas(tool, fixed) or provider.describe(tool.tool_name)
        if spec is None:
            description = str(tool.extra.get("description") or tool.tool_label or tool.tool_name)
            spec = FunctionSpec(tool.tool_name, description)
        return _Bound(tool, provider, FunctionSpec(tool.tool_name, spec.description,
                                                   spec.parameters), fixed)  # fmt: skip


class _ToolList(BaseModel):
    model_config = ConfigDict(extra="ignore")

    agent_tools: list[AgentTool] = Field(default_factory=list)


class _AgentRun:
    """The rounds of one agent execution (state lives here, not on the shared node)."""

    def __init__(
        self,
        node: AgentNode,
        ctx: NodeContext,
        provider: LLMProvider,
        model: str,
        tools: list[_Bound],
        strategy: str,
    ) -> None:
        self.node, self.ctx, self.provider, self.model = node, ctx, provider, model
        self.tools = {bound.tool.tool_name: bound for bound in tools}
        self.strategy = strategy
        self.usage = LLMUsage()
        self.json: list[Any] = []
        self.calls: list[dict[str, Any]] = []
        self.rounds = 0

    def loop(
        self, instruction: str, history: list[ChatMessage], query: str, limit: int
    ) -> Generator[NodeYield, None, str]:
        react = self.strategy == "react"
        base = [ChatMessage("system", _react_prompt(instruction, self.tools) if react
                            else instruction)] if (instruction or react) else []  # fmt: skip
        messages = [*base, *history, ChatMessage("user", query)]
        scratchpad = ""
        answer = ""
        for position in range(1, limit + 1):
            self.rounds = position
            last = position == limit
            specs = () if last else tuple(b.spec for b in self.tools.values())
            round_id = str(uuid.uuid4())
            yield self._log(round_id, f"ROUND {position}", None, "start", {})
            prompt = list(messages)
            if react:
                if last and self.tools:
                    final = "\n\nNo more actions are possible now: write the Final Answer."
                    prompt[0] = ChatMessage("system", prompt[0].content + final)
                if scratchpad:
                    prompt.append(ChatMessage("assistant", scratchpad))
            text, calls = yield from self._complete(prompt, specs, stream=not react)
            thought = text
            if react:
                thought, action = _parse_react(text)
                if action is None or last:
                    answer = action_final(text) if action is None else thought
                    yield from _stream(self.node.id, answer)
                    calls = ()
                else:
                    calls = (FunctionCall(f"call_{position}", action[0], action[1]),)
            elif not calls:
                answer = text
            observations: dict[str, str] = {}
            inputs: dict[str, Any] = {}
            for call in calls:
                inputs[call.name], observations[call.name] = yield from self._call(call, round_id)
            yield AgentThoughtEvent(
                **self.ctx.event_fields, thought_id=round_id, position=position, thought=thought,
                observation=json.dumps(observations, ensure_ascii=False) if calls else "",
                tool=";".join(c.name for c in calls),
                tool_input=json.dumps(inputs, ensure_ascii=False) if calls else "",
                tool_labels={c.name: self._label(c.name) for c in calls},
            )  # fmt: skip
            yield self._log(round_id, f"ROUND {position}", None, "success",
                            {"thought": thought, "tools": [c.name for c in calls]})  # fmt: skip
            if not calls:
                break
            if react:
                scratchpad += (
                    text.rstrip()
                    + "\n"
                    + "".join(f"{OBSERVATION} {observations[c.name]}\n" for c in calls)
                )
            else:
                messages.append(ChatMessage("assistant", text, tool_calls=tuple(calls)))
                messages.extend(
                    ChatMessage("tool", observations[c.name], tool_call_id=c.id) for c in calls
                )
        yield StreamChunk((self.node.id, "text"), "", is_final=True)
        return answer

    def _complete(
        self, messages: list[ChatMessage], specs: tuple[FunctionSpec, ...], *, stream: bool
    ) -> Generator[NodeYield, None, tuple[str, tuple[FunctionCall, ...]]]:
        request = ChatRequest(
            self.model, tuple(messages), dict(self.node.model.completion_params),
            tools=specs, tool_mode="react" if self.strategy == "react" else "native",
        )  # fmt: skip
        parts: list[str] = []
        calls: tuple[FunctionCall, ...] = ()
        for delta in self.provider.stream(request, self.ctx.stop):
            if delta.text:
                parts.append(delta.text)
                if stream:
                    yield StreamChunk((self.node.id, "text"), delta.text)
            if delta.tool_calls:
                calls = delta.tool_calls
            if delta.usage is not None:
                self.usage = LLMUsage(
                    self.usage.prompt_tokens + delta.usage.prompt_tokens,
                    self.usage.completion_tokens + delta.usage.completion_tokens,
                )
        return "".join(parts), calls

    def _call(
        self, call: FunctionCall, round_id: str
    ) -> Generator[NodeYield, None, tuple[dict[str, Any], str]]:
        log_id = str(uuid.uuid4())
        bound = self.tools.get(call.name)
        try:
            arguments = json.loads(call.arguments or "{}")
        except json.JSONDecodeError:
            arguments = {"input": call.arguments}
        if not isinstance(arguments, dict):
            arguments = {"input": arguments}
        yield self._log(log_id, f"CALL {call.name}", round_id, "start",
                        {"tool_name": call.name, "tool_input": arguments})  # fmt: skip
        if bound is None:
            observation = f"there is no tool named '{call.name}'"
            error: str | None = observation
        else:
            tool = bound.tool
            request = ToolCall(
                provider_type=tool.type, provider_id=tool.provider_name, tool_name=tool.tool_name,
                parameters={**arguments, **bound.fixed}, tenant_id=self.ctx.run.tenant_id,
                app_id=self.ctx.run.app_id, user_id=self.ctx.run.user_id,
            )  # fmt: skip
            try:
                result = invoke_tool(self.ctx.services.tools, request, self.ctx.stop)
            except ToolError as exc:
                observation, error = f"tool error: {exc.message}", exc.message
            else:
                observation, error = _observation(result), None
                self.json.extend(result.json)
        self.calls.append({"tool": call.name, "input": arguments, "error": error})
        yield self._log(log_id, f"CALL {call.name}", round_id, "error" if error else "success",
                        {"tool_name": call.name, "tool_input": arguments,
                         "output": observation}, error)  # fmt: skip
        return arguments, observation

    def _label(self, name: str) -> dict[str, str]:
        bound = self.tools.get(name)
        label = bound.tool.tool_label if bound is not None and bound.tool.tool_label else name
        return {"en_US": label}

    def _log(
        self,
        log_id: str,
        label: str,
        parent: str | None,
        status: str,
        data: dict[str, Any],
        error: str | None = None,
    ) -> AgentLogEvent:
        return AgentLogEvent(
            **self.ctx.event_fields, log_id=log_id, label=label, parent_id=parent,
            status=status, data=data, error=error,
            log_metadata={"provider": self.provider.label, "strategy": self.strategy},
        )  # fmt: skip


# --- helpers ------------------------------------------------------------------------------------


def _model_fields(value: Any) -> dict[str, Any]:
    """Dify's agent ``model`` value names the model ``model``; llm nodes name it ``name``."""
    data = dict(value) if isinstance(value, Mapping) else {}
    if "name" not in data and "model" in data:
        data["name"] = data["model"]
    return data


def _references(item: AgentInput | None) -> list[Selector]:
    if item is None:
        return []
    if item.type == "variable" and isinstance(item.value, list) and item.value:
        return [as_selector(item.value)]
    if item.type in ("mixed", "constant") and isinstance(item.value, str):
        return template_references(item.value)
    return []


def _resolve(item: AgentInput, pool: VariablePool) -> Any:
    if item.type == "variable":
        return pool.get(item.value) if isinstance(item.value, list) else None
    if item.type == "mixed" or (item.type == "constant" and isinstance(item.value, str)):
        return pool.render(str(item.value or ""))  # Dify renders constant text as a template
    return item.value


def _iterations(value: Any) -> int:
    try:
        count = int(value) if value not in (None, "") else DEFAULT_ITERATIONS
    except (TypeError, ValueError):
        raise NodeError(f"maximum_iterations must be a number, got {value!r}") from None
    if not 1 <= count <= MAX_ITERATIONS:
        raise NodeError(f"maximum_iterations must be between 1 and {MAX_ITERATIONS}, got {count}")
    return count


def _spec_from_schemas(tool: AgentTool, fixed: Mapping[str, Any]) -> FunctionSpec | None:
    """The tool's parameters the model fills (``form: llm``) from the export's schemas."""
    if not tool.schemas:
        return None
    properties: dict[str, Any] = {}
    required: list[str] = []
    for schema in tool.schemas:
        name = str(schema.get("name") or "")
        if not name or name in fixed or schema.get("form", "llm") != "llm":
            continue
        kind = str(schema.get("type") or "string")
        json_type = {"number": "number", "boolean": "boolean"}.get(kind, "string")
        description = str(schema.get("llm_description") or "")
        entry: dict[str, Any] = {"type": json_type, "description": description}
        options = [o.get("value") for o in schema.get("options") or [] if isinstance(o, dict)]
        if options:
            entry["enum"] = options
        properties[name] = entry
        if schema.get("required"):
            required.append(name)
    about = str(tool.extra.get("description") or tool.tool_label or tool.tool_name)
    parameters = {"type": "object", "properties": properties, "required": required}
    return FunctionSpec(tool.tool_name, about, parameters)


def _observation(result: ToolResult) -> str:
    text = result.text or (json.dumps(list(result.json), ensure_ascii=False) if result.json else "")
    return text[:_OBSERVATION_CHARS]


def _react_prompt(instruction: str, tools: Mapping[str, _Bound]) -> str:
    described = "\n".join(
        f"- {name}: {b.spec.description} Input: {json.dumps(dict(b.spec.parameters))}"
        for name, b in tools.items()
    )
    names = ", ".join(f'"{name}"' for name in tools)
    return (
        f"{instruction}\n\nAnswer the user's question. You can use these tools:\n{described}\n\n"
        "To use a tool, write:\nThought: what you need and why\nAction:\n```\n"
        '{"action": <one of ' + (names or "none") + '>, "action_input": {<parameters>}}\n```\n'
        "Then wait: the result comes back as an Observation. Repeat as needed. When you know "
        "the answer, write:\nThought: I know the final answer.\nFinal Answer: <the answer>"
    ).strip()


def _action_blob(text: str) -> dict[str, Any] | None:
    """The JSON object after ``Action:`` (fenced or not), or None."""
    marker = text.find("Action:")
    start = text.find("{", marker) if marker != -1 else -1
    if start == -1:
        return None
    try:
        blob, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError:
        return None
    return blob if isinstance(blob, dict) else None


def _parse_react(text: str) -> tuple[str, tuple[str, str] | None]:
    """``(thought, (tool, arguments JSON) or None)`` of a ReAct reply."""
    thought_match = re.search(r"Thought:\s*(.*?)(?:\n(?:Action|Final Answer):|\Z)", text, re.DOTALL)
    thought = thought_match.group(1).strip() if thought_match else text.strip()
    if "Final Answer:" in text:
        return thought, None
    blob = _action_blob(text)
    if blob is None or not blob.get("action"):
        return thought, None
    action = str(blob["action"])
    if action.lower() in ("final answer", "final_answer"):
        return thought, None
    arguments = blob.get("action_input")
    arguments = arguments if isinstance(arguments, dict) else {"input": arguments}
    return thought, (action, json.dumps(arguments, ensure_ascii=False))


def action_final(text: str) -> str:
    """The answer of a ReAct reply: after ``Final Answer:``, a Final Answer action's input, or
    the whole reply when the model wrote neither."""
    if "Final Answer:" in text:
        return text.split("Final Answer:", 1)[1].strip()
    blob = _action_blob(text)
    if blob is not None and str(blob.get("action", "")).lower() == "final answer":
        return str(blob.get("action_input") or "")
    return text.strip()


def _stream(node_id: str, text: str) -> Iterator[NodeYield]:
    for piece in tokenize(text):
        yield StreamChunk((node_id, "text"), piece)
