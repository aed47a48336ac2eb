"""What every node type shares: its parsed config, the context it runs in, what it yields.

A node's :meth:`Node.run` is a generator: it yields :class:`StreamChunk` and
:class:`RetrieverResources` while it works (an iteration also yields the engine events of its
items) and returns a :class:`NodeRunResult`, or raises :class:`NodeError`. The engine wraps
that into NodeRun* events, applies retry and error strategy, and takes the node's edges.
Node objects are shared by parallel iteration items, so ``run`` keeps its state in locals.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from relay.workflow.config import CodeSandboxConfig, HttpRequestConfig
from relay.workflow.errors import GraphValidationError
from relay.workflow.events import GraphEngineEvent
from relay.workflow.graph import FAIL_BRANCH_HANDLE, SOURCE_HANDLE, NodeConfig
from relay.workflow.knowledge import KnowledgeIndex
from relay.workflow.llm.base import ChatMessage, LLMProviderSource
from relay.workflow.stop import StopToken
from relay.workflow.tools.base import ToolSource
from relay.workflow.tools.builtin import local_tools
from relay.workflow.variables import Selector, VariablePool

# --- what a node yields and returns --------------------------------------------------------------


@dataclass(frozen=True)
class StreamChunk:
    """A piece of a streamed output variable (an llm's ``text``)."""

    selector: Selector
    chunk: str
    is_final: bool = False


@dataclass(frozen=True)
class RetrieverResources:
    """Segments a retrieval found, reported as NodeRunRetrieverResource."""

    resources: list[dict[str, Any]]
    context: str = ""


NodeYield = StreamChunk | RetrieverResources | GraphEngineEvent


@dataclass
class NodeRunResult:
    """A node's result; ``edge_source_handle`` picks which outgoing edges are taken."""

    outputs: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    process_data: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    edge_source_handle: str = SOURCE_HANDLE


NodeRun = Generator[NodeYield, None, NodeRunResult]


# --- what a node runs with --------------------------------------------------------------------


@dataclass(frozen=True)
class RunInfo:
    """Who and what a run is for; nodes use it for tenant scoping and chat memory."""

    tenant_id: str = ""
    app_id: str = ""
    workflow_id: str = ""
    run_id: str = ""
    user_id: str = ""
    chat_history: Sequence[ChatMessage] = ()


@dataclass(frozen=True)
class NodeServices:
    """The outside world nodes may use, injected so tests swap in local implementations."""

    llm: LLMProviderSource
    knowledge: KnowledgeIndex
    http: HttpRequestConfig = field(default_factory=HttpRequestConfig)
    code: CodeSandboxConfig = field(default_factory=CodeSandboxConfig)
    tools: ToolSource = field(default_factory=local_tools)


class SubgraphExecution(Protocol):
    """One iteration item running its body (the engine provides it)."""

    def events(self) -> Iterator[GraphEngineEvent]:
        """Events of the item's nodes as they happen."""
        ...

    @property
    def error(self) -> str | None:
        """Why the item failed, once :meth:`events` is exhausted (None on success)."""
        ...


class SubgraphRunner(Protocol):
    """Runs the body of an iteration node for one item."""

    @property
    def max_parallelism(self) -> int:
        """Most items an iteration may run at once, whatever its ``parallel_nums``."""
        ...

    def execution(
        self, iteration_node_id: str, pool: VariablePool, index: int, stop: StopToken
    ) -> SubgraphExecution:
        """A not yet started run of the body with ``pool`` (which holds item and index)."""
        ...


@dataclass(frozen=True)
class NodeContext:
    """Everything one node execution may touch."""

    execution_id: str
    pool: VariablePool
    services: NodeServices
    run: RunInfo
    stop: StopToken
    event_fields: Mapping[str, Any]
    subgraphs: SubgraphRunner | None = None


# --- retry and error strategy -----------------------------------------------------------------


class RetryConfig(BaseModel):
    """Dify's per-node retry settings (``retry_interval`` in milliseconds)."""

    model_config = ConfigDict(extra="ignore")

    retry_enabled: bool = False
    max_retries: int = Field(0, ge=0, le=100)
    retry_interval: int = Field(1000, ge=0, le=600_000)


class DefaultValue(BaseModel):
    """One output value used when a node fails under the default-value strategy."""

    model_config = ConfigDict(extra="ignore")

    key: str
    type: str = "string"
    value: Any = None


class NodePolicy(BaseModel):
    """Retry and error handling of a node, read from the common fields of its data."""

    model_config = ConfigDict(extra="ignore")

    retry_config: RetryConfig = Field(default_factory=RetryConfig)
    error_strategy: Literal["fail-branch", "default-value"] | None = None
    default_value: list[DefaultValue] = Field(default_factory=list)

    @property
    def max_retries(self) -> int:
        """Retries allowed after the first attempt."""
        return self.retry_config.max_retries if self.retry_config.retry_enabled else 0

    @property
    def retry_interval(self) -> float:
        """Seconds between attempts."""
        return self.retry_config.retry_interval / 1000

    def handled_outputs(self, error: str, error_type: str) -> tuple[dict[str, Any], str]:
        """Outputs and edge handle of a failure this strategy handles."""
        outputs: dict[str, Any] = {"error_message": error, "error_type": error_type}
        if self.error_strategy == "default-value":
            for item in self.default_value:
                outputs[item.key] = item.value
            return outputs, SOURCE_HANDLE
        return outputs, FAIL_BRANCH_HANDLE


# --- response nodes (answer, end) -------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """Part of what a response node shows: literal text or the value of a variable."""

    text: str | None = None
    selector: Selector | None = None


@dataclass(frozen=True)
class ResponseSpec:
    """How a response node streams: its segments in order; end nodes skip unstreamed values."""

    segments: tuple[Segment, ...]
    kind: Literal["answer", "end"]


# --- the node base class ----------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


def parse_data(model: type[M], config: NodeConfig) -> M:
    """Validate a node's ``data`` into its model, naming the node on error."""
    try:
        return model.model_validate(dict(config.data))
    except ValidationError as exc:
        fields = [
            (".".join(str(p) for p in err["loc"]) or "data", str(err["msg"]))
            for err in exc.errors()
        ]
        problems = "; ".join(f"{name}: {msg}" for name, msg in fields)
        message = f"{config.describe()} of type '{config.type}' has invalid data: {problems}"
        raise GraphValidationError(
            message,
            problems=[
                {"node_id": config.id, "field": name, "message": f"{config.describe()}: {msg}"}
                for name, msg in fields
            ],
        ) from exc


class Node(ABC):
    """Base of all node types; subclasses parse their data in ``__init__``."""

    node_type: ClassVar[str]

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.id = config.id
        self.title = config.title
        self.policy = parse_data(NodePolicy, config)

    def selectors(self) -> list[Selector]:
        """Variables this node reads (validated against the graph before a run)."""
        return []

    def declared_outputs(self) -> Iterable[str] | None:
        """Names of the outputs this node writes; None when they cannot be known before a run."""
        return None

    def output_names(self) -> frozenset[str] | None:
        """Every output name a reference may use (a failure strategy adds the error fields)."""
        declared = self.declared_outputs()
        if declared is None:
            return None
        extra = {"error_message", "error_type"} if self.policy.error_strategy else set()
        return frozenset(declared) | extra

    def response_spec(self) -> ResponseSpec | None:
        """For answer/end nodes: what they stream. None for every other node."""
        return None

    @property
    def decides_branch(self) -> bool:
        """Whether this node chooses among outgoing edges (if-else, fail-branch strategy)."""
        return self.policy.error_strategy == "fail-branch"

    @abstractmethod
    def run(self, ctx: NodeContext) -> NodeRun:
        """Do the node's work; yield stream pieces, return the result, raise NodeError."""
