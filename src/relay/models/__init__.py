"""relay's SQLAlchemy models, one aggregate per module.

Importing this package registers every table on ``Base.metadata`` (what Alembic compares against).
Status columns are plain strings; the ``StrEnum`` classes here name their values.
"""

from __future__ import annotations

from relay.models.app import App, AppDatasetJoin, AppMode, AppStatus, InstalledApp, Site
from relay.models.app_service_api import AppApiKey, MessageFeedback, UploadFile
from relay.models.base import (
    Base,
    IdMixin,
    TenantOwned,
    TimestampMixin,
    UTCDateTime,
    new_id,
    utcnow,
)
from relay.models.conversation import Conversation, ConversationStatus, Message, MessageStatus
from relay.models.dataset import (
    Dataset,
    DatasetStatus,
    DataSourceType,
    Document,
    DocumentSegment,
    DocumentStatusLog,
    IndexingStatus,
    IndexingTechnique,
    SegmentKeyword,
    SegmentStatus,
)
from relay.models.dead_letter import DeadLetter, DeadLetterReason
from relay.models.ops_trace import OpsTrace, OpsTraceStatus
from relay.models.outbox import OutboxMessage, OutboxStatus
from relay.models.processed import ProcessedKey
from relay.models.quota import ProviderQuota, QuotaType
from relay.models.task_record import TaskRecord, TaskStatus
from relay.models.tenant import Account, AccountRole, ApiKey, Tenant, TenantStatus, tenant_fk
from relay.models.tool_provider import ToolProviderSetting
from relay.models.workflow_run import (
    CreatorRole,
    NodeExecutionStatus,
    WorkflowNodeExecution,
    WorkflowRun,
    WorkflowRunStatus,
    WorkflowRunTriggeredFrom,
)

__all__ = [
    # base
    "Base",
    "IdMixin",
    "TenantOwned",
    "TimestampMixin",
    "UTCDateTime",
    "new_id",
    "utcnow",
    "tenant_fk",
    # tenant
    "Tenant",
    "TenantStatus",
    "Account",
    "AccountRole",
    "ApiKey",
    "AppApiKey",
    "MessageFeedback",
    "UploadFile",
    # app
    "App",
    "AppMode",
    "AppStatus",
    "InstalledApp",
    "Site",
    "AppDatasetJoin",
    # dataset
    "Dataset",
    "DatasetStatus",
    "IndexingTechnique",
    "Document",
    "DataSourceType",
    "IndexingStatus",
    "DocumentSegment",
    "SegmentStatus",
    "SegmentKeyword",
    "DocumentStatusLog",
    # conversation
    "Conversation",
    "ConversationStatus",
    "Message",
    "MessageStatus",
    # quota
    "ProviderQuota",
    "QuotaType",
    # workflow runs
    "WorkflowRun",
    "WorkflowRunStatus",
    "WorkflowRunTriggeredFrom",
    "CreatorRole",
    "WorkflowNodeExecution",
    "NodeExecutionStatus",
    # ops traces
    "OpsTrace",
    "OpsTraceStatus",
    # task machinery (system-owned)
    "TaskRecord",
    "TaskStatus",
    "DeadLetter",
    "DeadLetterReason",
    "OutboxMessage",
    "OutboxStatus",
    "ProcessedKey",
    "ToolProviderSetting",
]
