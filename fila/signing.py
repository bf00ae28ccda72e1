"""Standard Webhooks signatures on what Fila POSTs, so receivers can verify and de-duplicate."""

from __future__ import annotations

import datetime as dt

from standardwebhooks.webhooks import Webhook


class Signer:
    """Signs bodies with one secret; `webhook-id` is the caller's idempotency key."""

    def __init__(self, secret: str) -> None:
        self._webhook = Webhook(secret)

    def headers(self, message_id: str, body: bytes) -> dict[str, str]:
        now = dt.datetime.now(dt.UTC)
        return {
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._webhook.sign(message_id, now, body.decode()),
        }
