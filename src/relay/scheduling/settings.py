"""The scheduler's settings (``RELAY_SCHEDULING_*``); they live with the other sections."""

from __future__ import annotations

from relay.config.scheduling import SchedulingSettings

__all__ = ["SchedulingSettings"]
