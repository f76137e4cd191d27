"""``GET /v1/streams/{id}/{token}``: a prediction's server-sent events at its ``urls.stream``.

A capability URL: the token in the path is the credential, so it works with or without an
``Authorization`` header (the official clients send one; a browser's EventSource cannot).
"""

from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import StreamingResponse

from server.deps import ServicesDep

router = APIRouter(prefix="/v1")


@router.get("/streams/{prediction_id}/{token}")
async def stream_prediction(
    prediction_id: str,
    token: str,
    services: ServicesDep,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    p = await services.predictions.by_stream_token(prediction_id, token)
    after = int(last_event_id) if last_event_id and last_event_id.strip().isdigit() else 0
    return StreamingResponse(
        services.streams.subscribe(p, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
