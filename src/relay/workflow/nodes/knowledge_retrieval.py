"""knowledge-retrieval: searches the app's datasets (tenant-scoped) for the query."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from relay.workflow.errors import NodeError
from relay.workflow.graph import NodeConfig
from relay.workflow.nodes.base import (
    Node,
    NodeContext,
    NodeRun,
    NodeRunResult,
    RetrieverResources,
    parse_data,
)
from relay.workflow.variables import Selector, as_selector, to_text

DEFAULT_TOP_K = 4


class MultipleRetrievalConfig(BaseModel):
    """How many segments to return and the minimum score."""

    model_config = ConfigDict(extra="ignore")

    top_k: int = Field(DEFAULT_TOP_K, ge=1, le=100)
    score_threshold: float | None = None
    score_threshold_enabled: bool | None = None


class KnowledgeRetrievalData(BaseModel):
    """knowledge-retrieval node data (rerank settings are read and ignored: keyword search)."""

    model_config = ConfigDict(extra="ignore")

    query_variable_selector: list[str]
    dataset_ids: list[str] = Field(default_factory=list)
    retrieval_mode: Literal["single", "multiple"] = "multiple"
    multiple_retrieval_config: MultipleRetrievalConfig | None = None


class KnowledgeRetrievalNode(Node):
    """Outputs ``result``: ``[{content, title, metadata}]``; emits NodeRunRetrieverResource."""

    node_type = "knowledge-retrieval"

    def __init__(self, config: NodeConfig) -> None:
        super().__init__(config)
        self.data = parse_data(KnowledgeRetrievalData, config)

    def selectors(self) -> list[Selector]:
        return [as_selector(self.data.query_variable_selector)]

    def declared_outputs(self) -> list[str]:
        return ["result"]

    def run(self, ctx: NodeContext) -> NodeRun:
        query = to_text(ctx.pool.get(self.data.query_variable_selector)).strip()
        if not query:
            shown = ".".join(self.data.query_variable_selector)
            state = (
                "is empty" if ctx.pool.has(self.data.query_variable_selector) else "has no value"
            )
            raise NodeError(f"knowledge retrieval needs a non-empty query, but '{shown}' {state}")
        settings = self.data.multiple_retrieval_config or MultipleRetrievalConfig()
        top_k = settings.top_k if self.data.retrieval_mode == "multiple" else DEFAULT_TOP_K
        found = ctx.services.knowledge.search(
            ctx.run.tenant_id, self.data.dataset_ids, query, top_k
        )
        threshold = settings.score_threshold
        if threshold is not None and settings.score_threshold_enabled is not False:
            found = [segment for segment in found if segment.score >= threshold]
        resources: list[dict[str, Any]] = []
        result: list[dict[str, Any]] = []
        for position, segment in enumerate(found, start=1):
            source = {
                "position": position,
                "dataset_id": segment.dataset_id,
                "dataset_name": segment.dataset_name,
                "document_id": segment.document_id,
                "document_name": segment.document_name,
                "segment_id": segment.segment_id,
                "score": segment.score,
            }
            resources.append({**source, "content": segment.content})
            result.append(
                {
                    "metadata": {**source, **dict(segment.metadata), "_source": "knowledge"},
                    "title": segment.document_name,
                    "content": segment.content,
                }
            )
        if resources:
            yield RetrieverResources(resources, "\n".join(r["content"] for r in resources))
        return NodeRunResult(
            outputs={"result": result},
            inputs={"query": query},
            process_data={"dataset_ids": self.data.dataset_ids, "top_k": top_k},
        )
