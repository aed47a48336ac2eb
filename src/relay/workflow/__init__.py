"""relay's workflow engine: Dify-compatible graphs, run as a generator of Dify's events.

Typical use::

    from relay.workflow import load_dsl, create_engine, create_services, SystemVariables

    app = load_dsl(yaml_text)
    engine = create_engine(app, inputs={"title": "..."}, services=create_services())
    for event in engine.run():
        ...

The graph, engine, events and variable modules are I/O-free; nodes do the I/O (httpx, a
sandbox child process, the LLM provider, the knowledge index).
"""

from __future__ import annotations

from relay.workflow.checkpoint import RunCheckpoint
from relay.workflow.config import (
    CodeSandboxConfig,
    EngineConfig,
    ExecutionLimits,
    HttpRequestConfig,
    LLMProviderConfig,
    LLMSettings,
)
from relay.workflow.dsl import WorkflowApp, graph_from_dict, load_dsl
from relay.workflow.engine import GraphEngine
from relay.workflow.errors import (
    CheckpointError,
    DSLError,
    GraphValidationError,
    NodeError,
    NodeStopped,
    UnsupportedNodeTypeError,
    WorkflowError,
)
from relay.workflow.events import (
    GraphEngineEvent,
    GraphRunAbortedEvent,
    GraphRunFailedEvent,
    GraphRunPartialSucceededEvent,
    GraphRunPausedEvent,
    GraphRunResumedEvent,
    GraphRunStartedEvent,
    GraphRunSucceededEvent,
    IterationRunFailedEvent,
    IterationRunNextEvent,
    IterationRunStartedEvent,
    IterationRunSucceededEvent,
    NodeRunExceptionEvent,
    NodeRunFailedEvent,
    NodeRunRetrieverResourceEvent,
    NodeRunRetryEvent,
    NodeRunStartedEvent,
    NodeRunStreamChunkEvent,
    NodeRunSucceededEvent,
    ParallelBranchRunFailedEvent,
    ParallelBranchRunStartedEvent,
    ParallelBranchRunSucceededEvent,
)
from relay.workflow.factory import create_engine, create_services
from relay.workflow.graph import Edge, Graph, NodeConfig, validate_graph
from relay.workflow.knowledge import InMemoryKnowledgeIndex, KnowledgeIndex, RetrievedSegment
from relay.workflow.layers import (
    EngineControl,
    ExecutionLimitsLayer,
    FixedTimeSlice,
    GraphEngineLayer,
    PersistenceLayer,
    RunRecordInfo,
    SliceController,
    TimeSliceLayer,
)
from relay.workflow.llm.base import ChatMessage, LLMProvider, LLMProviderSource
from relay.workflow.llm.providers import LLMProviders
from relay.workflow.nodes.base import Node, NodeContext, NodeRunResult, NodeServices, RunInfo
from relay.workflow.nodes.registry import NodeRegistry, default_registry
from relay.workflow.run_store import (
    InMemoryWorkflowRunStore,
    NodeExecutionRecord,
    WorkflowRunRecord,
    WorkflowRunStore,
)
from relay.workflow.stop import StopToken
from relay.workflow.variables import SystemVariables, VariablePool

__all__ = [
    # import and graph
    "WorkflowApp",
    "load_dsl",
    "graph_from_dict",
    "Graph",
    "NodeConfig",
    "Edge",
    "validate_graph",
    # running
    "GraphEngine",
    "create_engine",
    "create_services",
    "RunInfo",
    "SystemVariables",
    "VariablePool",
    "RunCheckpoint",
    "StopToken",
    # settings
    "EngineConfig",
    "ExecutionLimits",
    "LLMProviderConfig",
    "LLMSettings",
    "HttpRequestConfig",
    "CodeSandboxConfig",
    # events
    "GraphEngineEvent",
    "GraphRunStartedEvent",
    "GraphRunResumedEvent",
    "GraphRunSucceededEvent",
    "GraphRunFailedEvent",
    "GraphRunPartialSucceededEvent",
    "GraphRunAbortedEvent",
    "GraphRunPausedEvent",
    "NodeRunStartedEvent",
    "NodeRunStreamChunkEvent",
    "NodeRunRetrieverResourceEvent",
    "NodeRunSucceededEvent",
    "NodeRunFailedEvent",
    "NodeRunExceptionEvent",
    "NodeRunRetryEvent",
    "ParallelBranchRunStartedEvent",
    "ParallelBranchRunSucceededEvent",
    "ParallelBranchRunFailedEvent",
    "IterationRunStartedEvent",
    "IterationRunNextEvent",
    "IterationRunSucceededEvent",
    "IterationRunFailedEvent",
    # layers and persistence
    "GraphEngineLayer",
    "EngineControl",
    "ExecutionLimitsLayer",
    "PersistenceLayer",
    "RunRecordInfo",
    "TimeSliceLayer",
    "SliceController",
    "FixedTimeSlice",
    "WorkflowRunStore",
    "InMemoryWorkflowRunStore",
    "WorkflowRunRecord",
    "NodeExecutionRecord",
    # nodes and their services
    "Node",
    "NodeContext",
    "NodeRunResult",
    "NodeServices",
    "NodeRegistry",
    "default_registry",
    "LLMProvider",
    "LLMProviderSource",
    "LLMProviders",
    "ChatMessage",
    "KnowledgeIndex",
    "InMemoryKnowledgeIndex",
    "RetrievedSegment",
    # errors
    "WorkflowError",
    "DSLError",
    "GraphValidationError",
    "UnsupportedNodeTypeError",
    "NodeError",
    "NodeStopped",
    "CheckpointError",
]
