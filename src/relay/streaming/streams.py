"""``RunStreams``: a runtime's channel, run control and queue settings for workflow run events."""

from __future__ import annotations

from dataclasses import dataclass

from relay.streaming.channels import RunChannel
from relay.streaming.queue_manager import AppQueueManager, InvokeFrom, QueueConfig
from relay.streaming.run_control import RunControl


@dataclass(frozen=True)
class RunStreams:
    """Where run events go (``channel``), who owns and may stop a run (``control``), and how."""

    channel: RunChannel
    control: RunControl
    config: QueueConfig

    def manager(
        self,
        run_id: str,
        user_id: str,
        invoke_from: InvokeFrom | str = InvokeFrom.SERVICE_API,
        *,
        record_owner: bool = True,
    ) -> AppQueueManager:
        """The queue manager of ``run_id`` for ``user_id``."""
        return AppQueueManager(
            run_id,
            user_id,
            invoke_from,
            channel=self.channel,
            control=self.control,
            config=self.config,
            record_owner=record_owner,
        )
