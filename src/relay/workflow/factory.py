"""Wiring for the common case: services from settings, and an engine for an imported app."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from relay.workflow.config import CodeSandboxConfig, EngineConfig, HttpRequestConfig, LLMSettings
from relay.workflow.dsl import WorkflowApp
from relay.workflow.engine import GraphEngine
from relay.workflow.graph import Graph
from relay.workflow.knowledge import InMemoryKnowledgeIndex, KnowledgeIndex
from relay.workflow.layers import GraphEngineLayer
from relay.workflow.llm.providers import LLMProviders
from relay.workflow.nodes.base import NodeServices, RunInfo
from relay.workflow.nodes.registry import NodeRegistry, default_registry
from relay.workflow.tools.base import ToolSource
from relay.workflow.tools.catalog import builtin_tools
from relay.workflow.variables import SystemVariables, VariablePool


def create_services(
    *,
    llm: LLMSettings | None = None,
    knowledge: KnowledgeIndex | None = None,
    http: HttpRequestConfig | None = None,
    code: CodeSandboxConfig | None = None,
    tools: ToolSource | None = None,
) -> NodeServices:
    """Node services from settings (offline LLM, an empty in-memory index and the built-in
    tools by default)."""
    return NodeServices(
        llm=LLMProviders(llm),
        knowledge=knowledge if knowledge is not None else InMemoryKnowledgeIndex(),
        http=http or HttpRequestConfig(),
        code=code or CodeSandboxConfig(),
        tools=tools if tools is not None else builtin_tools(http=http),
    )


def create_engine(
    app: WorkflowApp | Graph,
    *,
    inputs: Mapping[str, Any] | None = None,
    system: SystemVariables | None = None,
    environment: Mapping[str, Any] | None = None,
    conversation: Mapping[str, Any] | None = None,
    services: NodeServices | None = None,
    run_info: RunInfo | None = None,
    config: EngineConfig | None = None,
    layers: Sequence[GraphEngineLayer] = (),
    registry: NodeRegistry | None = None,
) -> GraphEngine:
    """An engine for one run of ``app`` with these inputs.

    Environment and conversation variables start from the app's declared defaults, overridden
    by ``environment``/``conversation`` (the conversation's current values). ``run_info.run_id``
    (a new uuid if unset) is also ``sys.workflow_run_id``.
    """
    graph = app.graph if isinstance(app, WorkflowApp) else app
    info = run_info or RunInfo()
    if not info.run_id:
        info = replace(info, run_id=str(uuid.uuid4()))
    sys_vars = system or SystemVariables()
    sys_vars = replace(
        sys_vars,
        workflow_run_id=sys_vars.workflow_run_id or info.run_id,
        app_id=sys_vars.app_id or info.app_id or None,
        user_id=sys_vars.user_id or info.user_id or None,
    )
    declared_env = app.environment_variables if isinstance(app, WorkflowApp) else {}
    declared_conv = app.conversation_variables if isinstance(app, WorkflowApp) else {}
    pool = VariablePool(
        system=sys_vars,
        user_inputs=inputs or {},
        environment={**declared_env, **(environment or {})},
        conversation={**declared_conv, **(conversation or {})},
    )
    return GraphEngine(
        graph,
        pool,
        registry=registry or default_registry(),
        services=services or create_services(),
        run_info=info,
        config=config,
        layers=layers,
    )
