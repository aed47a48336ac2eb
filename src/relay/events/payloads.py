"""Typed, frozen payloads of the domain events: ids and plain values, never ORM objects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class TenantCreated:
    tenant_id: str
    plan: str


@dataclass(frozen=True, slots=True)
class TenantUpdated:
    tenant_id: str
    plan: str
    previous_plan: str


@dataclass(frozen=True, slots=True)
class AppCreated:
    tenant_id: str
    app_id: str
    mode: str
    name: str


@dataclass(frozen=True, slots=True)
class AppDeleted:
    tenant_id: str
    app_id: str


@dataclass(frozen=True, slots=True)
class AppModelConfigUpdated:
    tenant_id: str
    app_id: str
    model_config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AppPublishedWorkflowUpdated:
    tenant_id: str
    app_id: str
    graph: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AppDraftWorkflowSynced:
    tenant_id: str
    app_id: str


@dataclass(frozen=True, slots=True)
class DatasetDeleted:
    tenant_id: str
    dataset_id: str


@dataclass(frozen=True, slots=True)
class DocumentDeleted:
    tenant_id: str
    dataset_id: str
    document_id: str


@dataclass(frozen=True, slots=True)
class DocumentIndexCreated:
    tenant_id: str
    dataset_id: str
    document_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MessageCreated:
    tenant_id: str
    app_id: str
    conversation_id: str
    message_id: str
    provider: str
    total_tokens: int


Payload = (
    TenantCreated
    | TenantUpdated
    | AppCreated
    | AppDeleted
    | AppModelConfigUpdated
    | AppPublishedWorkflowUpdated
    | AppDraftWorkflowSynced
    | DatasetDeleted
    | DocumentDeleted
    | DocumentIndexCreated
    | MessageCreated
)
