"""Admission under resource pressure: while the process is under pressure every submission and
workflow run is refused (429 ``overloaded`` with ``Retry-After``), consuming no tokens; otherwise
the wrapped admission decides."""

from __future__ import annotations

from relay.config import Plan
from relay.resilience.pressure import PressureMonitor
from relay.scheduling.admission import Admission, AdmissionDecision, Limit
from relay.scheduling.settings import SchedulingSettings


class PressureAdmission:
    """An :class:`~relay.scheduling.admission.Admission` that tightens under pressure."""

    def __init__(self, inner: Admission, pressure: PressureMonitor) -> None:
        self.inner = inner
        self.pressure = pressure
        self.settings: SchedulingSettings = inner.settings

    def _refused(self) -> AdmissionDecision | None:
        # Sampling runs in each process that admits work (cheap once running; after a fork the
        # first check starts it in the child).
        self.pressure.start()
        if not self.pressure.active:
            return None
        return AdmissionDecision(
            False, retry_after=float(self.pressure.settings.retry_after), limit=Limit.PRESSURE
        )

    def check_submission(self, tenant: str, plan: Plan | str, count: int = 1) -> AdmissionDecision:
        return self._refused() or self.inner.check_submission(tenant, plan, count)

    def check_workflow_run(self, tenant: str, plan: Plan | str) -> AdmissionDecision:
        return self._refused() or self.inner.check_workflow_run(tenant, plan)

    def refund_submission(self, tenant: str, plan: Plan | str, count: int = 1) -> None:
        self.inner.refund_submission(tenant, plan, count)

    def refund_workflow_run(self, tenant: str, plan: Plan | str) -> None:
        self.inner.refund_workflow_run(tenant, plan)

    def refusals(self) -> dict[str, dict[str, int]]:
        """The wrapped admission's refusal counts (refusals under pressure are alerted, not
        counted per tenant: they refuse every tenant alike)."""
        return self.inner.refusals()
