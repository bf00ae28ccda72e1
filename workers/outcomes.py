"""What becomes of a message not delivered: a try later, or its dead letters and a queue.error.

Ingest, delivery and the monitoring sender read the tries so far and build a `queue.error` here;
the two consumers of RabbitMQ messages (delivery, monitoring) put one back through a delay
queue or into their dead-letter queue through `Outcomes`, acknowledging it only once that is
confirmed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from structlog.stdlib import BoundLogger

from fila import topology
from fila.models import MonitoringEvent
from fila.redelivery import dead_headers, republished, retry_headers
from fila.settings import Settings
from workers.enqueue import header_int, iso_now
from workers.webhook import Attempt

Declare = Callable[[AbstractChannel, Settings], Awaitable[AbstractQueue]]


def tries_so_far(headers: Mapping[str, Any] | None) -> int:
    """Tries so far (`x-fila-attempts`), 0 when absent or unreadable."""
    return header_int(dict(headers or {}), topology.H_ATTEMPTS)


def queue_error(settings: Settings, data: dict[str, Any], instance: str | None) -> MonitoringEvent:
    """The monitoring webhook's report of one event that was refused or dead-lettered."""
    return MonitoringEvent(
        event="queue.error",
        timestamp=iso_now(),
        data=data,
        server_url=settings.server_url,
        instance=instance,
    )


@dataclass(frozen=True)
class Route:
    """Where a consumer's messages go back to and where they die."""

    stage: str
    """Written in the dead letter's headers."""
    what: str
    """How log lines name the message."""
    queue: str
    dlq: str
    declare: Declare


DELIVERY = Route(
    "delivery", "delivery", topology.GLOBAL_QUEUE, topology.GLOBAL_DLQ, topology.declare_global
)
MONITORING = Route(
    "monitoring",
    "monitoring event",
    topology.MONITORING_QUEUE,
    topology.MONITORING_DLQ,
    topology.declare_monitoring,
)


class Outcomes:
    """Retry and dead-letter for the consumer of one queue, each publish confirmed, then acked."""

    def __init__(
        self, settings: Settings, channel: AbstractChannel, log: BoundLogger, route: Route
    ) -> None:
        self.settings = settings
        self.channel = channel
        self.log = log
        self.route = route
        self._delays: set[str] = set()

    async def later(
        self,
        message: AbstractIncomingMessage,
        attempts: int,
        status: int | None,
        delay_ms: int,
        **fields: Any,
    ) -> None:
        """Back onto its queue after `delay_ms`, through a delay queue; `fields` go to the log."""
        headers = retry_headers(message, attempts, status)
        await topology.publish_later(
            self.channel,
            self.settings,
            republished(message, headers),
            self.route.queue,
            delay_ms,
            self._delays,
        )
        await message.ack()
        self.log.info(
            f"{self.route.what} retried later",
            **fields,
            attempts=attempts,
            status=status,
            delay_ms=delay_ms,
        )

    async def dead_letter(
        self, message: AbstractIncomingMessage, reason: str, attempt: Attempt, attempts: int
    ) -> dict[str, Any]:
        """Into the dead-letter queue with why, after how many tries, what the target said."""
        headers = dead_headers(
            message,
            reason=reason,
            stage=self.route.stage,
            attempts=attempts,
            status=attempt.status,
            response=attempt.response,
        )
        await topology.publish_declaring(
            self.channel,
            republished(message, headers),
            self.route.dlq,
            topology.declarer(self.route.declare, self.settings),
        )
        await message.ack()
        self.log.warning(
            f"{self.route.what} dead-lettered",
            message_id=message.message_id,
            reason=reason,
            status=attempt.status,
            attempts=attempts,
        )
        return headers
