"""Node types by Dify type name; the engine builds nodes and validation reads selectors here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from relay.workflow.errors import UnsupportedNodeTypeError
from relay.workflow.graph import NodeConfig
from relay.workflow.nodes.agent import AgentNode
from relay.workflow.nodes.answer import AnswerNode
from relay.workflow.nodes.assigner import AssignerNode
from relay.workflow.nodes.base import Node
from relay.workflow.nodes.code import CodeNode
from relay.workflow.nodes.document_extractor import DocumentExtractorNode
from relay.workflow.nodes.end import EndNode
from relay.workflow.nodes.http_request import HttpRequestNode
from relay.workflow.nodes.if_else import IfElseNode
from relay.workflow.nodes.iteration import IterationNode
from relay.workflow.nodes.iteration_start import IterationStartNode
from relay.workflow.nodes.knowledge_retrieval import KnowledgeRetrievalNode
from relay.workflow.nodes.list_operator import ListOperatorNode
from relay.workflow.nodes.llm import LLMNode
from relay.workflow.nodes.loop import LoopNode
from relay.workflow.nodes.loop_start import LoopEndNode, LoopStartNode
from relay.workflow.nodes.parameter_extractor import ParameterExtractorNode
from relay.workflow.nodes.question_classifier import QuestionClassifierNode
from relay.workflow.nodes.start import StartNode
from relay.workflow.nodes.template_transform import TemplateTransformNode
from relay.workflow.nodes.tool import ToolNode
from relay.workflow.nodes.variable_aggregator import VariableAggregatorNode
from relay.workflow.variables import Selector

BUILTIN_NODES: tuple[type[Node], ...] = (
    StartNode,
    EndNode,
    AnswerNode,
    LLMNode,
    TemplateTransformNode,
    IfElseNode,
    CodeNode,
    HttpRequestNode,
    IterationNode,
    IterationStartNode,
    VariableAggregatorNode,
    AssignerNode,
    KnowledgeRetrievalNode,
    ParameterExtractorNode,
    QuestionClassifierNode,
    ListOperatorNode,
    DocumentExtractorNode,
    LoopNode,
    LoopStartNode,
    LoopEndNode,
    ToolNode,
    AgentNode,
)
# Older Dify exports call the aggregator "variable-assigner".
ALIASES = {"variable-assigner": "variable-aggregator"}


class NodeRegistry:
    """Maps type names to node classes; register your own types for custom nodes."""

    def __init__(
        self, node_types: Iterable[type[Node]] = (), aliases: Mapping[str, str] | None = None
    ) -> None:
        self._types: dict[str, type[Node]] = {}
        for node_type in node_types:
            self.register(node_type)
        for alias, target in (aliases or {}).items():
            self._types[alias] = self._types[target]

    def register(self, node_class: type[Node], name: str | None = None) -> None:
        """Make ``node_class`` run nodes of type ``name`` (default: its ``node_type``)."""
        self._types[name or node_class.node_type] = node_class

    def supported_types(self) -> list[str]:
        """Type names this registry can run."""
        return sorted(self._types)

    def create(self, config: NodeConfig) -> Node:
        """Build the node for ``config``."""
        node_class = self._types.get(config.type)
        if node_class is None:
            raise UnsupportedNodeTypeError(
                f"{config.describe()} has type '{config.type}', which relay does not support",
                details=[{"node_id": config.id, "node_type": config.type, "title": config.title}],
            )
        return node_class(config)

    def selectors(self, config: NodeConfig) -> list[Selector]:
        """Variables the node reads (parsing its data, so invalid data raises here)."""
        return self.create(config).selectors()

    def outputs(self, config: NodeConfig) -> frozenset[str] | None:
        """Output names the node writes (None: only known when it runs)."""
        return self.create(config).output_names()


def default_registry() -> NodeRegistry:
    """A new registry with every built-in node type."""
    return NodeRegistry(BUILTIN_NODES, ALIASES)
