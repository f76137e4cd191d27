"""Wire shape of the delivery attempts admins read (``GET /v1/admin/webhooks``)."""

from typing import Any

from server.clock import isoformat
from server.webhooks.tables import WebhookAttemptRow


def render_attempt(row: WebhookAttemptRow, state: str | None) -> dict[str, Any]:
    """One attempt: what was sent where, what came back, and where its message stands now."""
    return {
        "id": row.id,
        "webhook_id": row.delivery_id,
        "prediction_id": row.prediction_id,
        "event": row.event,
        "url": row.url,
        "attempt": row.attempt,
        "status_code": row.status_code,
        "error": row.error,
        "duration": row.duration,
        "created_at": isoformat(row.created_at),
        "state": state,
    }
