"""Wire shapes of predictions: the create body and the prediction object clients parse."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from server import errors
from server.clock import isoformat
from server.predictions.prediction import Prediction

WebhookEvent = Literal["start", "output", "logs", "completed"]


class PredictionCreate(BaseModel):
    """Body of the three create endpoints. Unknown keys (``stream``, JS spreads) are ignored."""

    model_config = ConfigDict(extra="ignore")

    version: str | None = None
    """A 64-hex version id, ``owner/name:id`` or ``owner/name`` (only on ``/v1/predictions``)."""
    input: dict[str, Any] = Field(default_factory=dict)
    """The predictor's inputs, checked against the version's ``Input`` schema."""
    webhook: str | None = None
    """A URL to POST the prediction to as it changes (delivered by the webhooks subsystem)."""
    webhook_events_filter: list[WebhookEvent] | None = None
    """Which events to send: start, output, logs, completed (all when omitted)."""
    webhook_completed: str | None = None
    """Legacy: still sent by some clients; accepted and ignored."""
    stream: bool | None = None
    """Deprecated by Replicate; accepted and ignored."""


def parse_create(data: dict[str, Any]) -> PredictionCreate:
    try:
        return PredictionCreate.model_validate(data)
    except ValidationError as exc:
        raise errors.invalid_fields(exc.errors()) from None


def render(p: Prediction, base_url: str) -> dict[str, Any]:
    """The prediction object exactly as ``GET /v1/predictions/{id}`` returns it."""
    get_url = f"{base_url}/v1/predictions/{p.id}"
    body: dict[str, Any] = {
        "id": p.id,
        "model": p.model,
        "version": p.version_id,
        "input": p.input,
        "logs": p.logs,
        "output": list(p.output) if isinstance(p.output, list) else p.output,
        "data_removed": False,
        "error": p.error,
        "status": p.status.value,
        "source": p.source,
        "created_at": isoformat(p.created_at),
        "started_at": isoformat(p.started_at),
        "completed_at": isoformat(p.completed_at),
        "urls": {"get": get_url, "cancel": f"{get_url}/cancel", "web": get_url},
        "metrics": p.metrics,
    }
    if p.stream_token:  # a capability URL: works without Authorization
        body["urls"]["stream"] = f"{base_url}/v1/streams/{p.id}/{p.stream_token}"
    if p.deployment:
        body["deployment"] = p.deployment
    if p.deadline:
        body["deadline"] = isoformat(p.deadline)
    if p.webhook:
        body["webhook"] = p.webhook
        body["webhook_events_filter"] = p.webhook_events_filter or [
            "start",
            "output",
            "logs",
            "completed",
        ]
    return body


def render_waiting(p: Prediction, base_url: str) -> dict[str, Any]:
    """A ``Prefer: wait`` response that timed out: status ``starting``, no output (checklist 9)."""
    body = render(p, base_url)
    if not p.status.is_terminal():
        body.update(status="starting", output=None)
    return body
