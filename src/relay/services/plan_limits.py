"""The indexing limits of a tenant's plan, checked before any document is created or indexed.

Which layer enforces what:

- The upload (``DocumentService.upload``) checks all three limits and refuses the whole upload
  with 403 ``plan_limit`` (details name each document and the reason): nothing is created.
  Uploads of one tenant are serialised on its tenant row, so two uploads cannot both pass the
  document count.
- The indexing task checks the batch and document limits again for upload batches, against the
  plan the tenant has *when the work starts* (a downgrade between upload and indexing, or a
  message from another producer). A refused batch is not indexed at all: each of its documents
  is marked ``error`` with the reason. Re-dispatches (reaper, retry, resume) are not uploads and
  are not checked again.

The limits (``IndexingSettings``): ``batch_upload_limit`` documents per upload on every plan,
lowered per plan by ``plan_batch_limit`` (sandbox: 1), and ``document_limit`` documents per
tenant over all its datasets (0: none).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from relay.config import IndexingSettings, Plan
from relay.errors import Forbidden


class PlanLimitExceeded(Forbidden):
    """An upload breaks a limit of the tenant's plan (details: the reason per document)."""

    code = "plan_limit"


@dataclass(frozen=True)
class Refusal:
    """Why a batch may not be indexed."""

    kind: str  # "batch" or "documents"
    plan: Plan
    limit: int
    reason: str

    def error(self, names: Sequence[str]) -> PlanLimitExceeded:
        """The API error: the reason, and the same reason on each document of the batch."""
        details: dict[str, Any] = {
            "kind": self.kind,
            "plan": self.plan.value,
            "limit": self.limit,
            "documents": [{"name": name, "reason": self.reason} for name in names],
        }
        return PlanLimitExceeded(self.reason, details=details)


def check_limits(settings: IndexingSettings, plan: Plan, batch: int, held: int) -> Refusal | None:
    """The first limit a batch of ``batch`` documents breaks for a tenant already holding
    ``held`` documents (not counting the batch), or None when it fits."""
    per_batch = settings.batch_limit(plan)
    if batch > per_batch:
        noun = "document" if per_batch == 1 else "documents"
        return Refusal(
            "batch",
            plan,
            per_batch,
            f"the {plan.value} plan allows {per_batch} {noun} per upload; this upload has {batch}",
        )
    allowed = settings.documents_allowed(plan)
    if allowed is not None and held + batch > allowed:
        return Refusal(
            "documents",
            plan,
            allowed,
            f"the {plan.value} plan allows {allowed} documents; the tenant has {held} "
            f"and this upload adds {batch}",
        )
    return None
