"""Routes for predictions: create (three ways), get, list, cancel. Thin: parse, call, render."""

import re

from fastapi import APIRouter

from server import errors
from server.deps import BaseUrl, CreateCall, CreateCallDep, CurrentAccount, PageUrl, ServicesDep
from server.jsoncodec import JSONResponse
from server.models.service import VersionInfo
from server.predictions.schemas import PredictionCreate, parse_create, render, render_waiting
from server.predictions.service import CreateRequest
from server.scheduler.placement import Placement

router = APIRouter(prefix="/v1")


def parse_prefer_wait(header: str | None, maximum: int) -> int | None:
    """``Prefer: wait`` -> maximum; ``wait=N`` -> N clamped to 1..maximum; else None."""
    if not header:
        return None
    for part in header.split(","):
        token = part.strip().lower()
        if token == "wait":
            return maximum
        if token.startswith("wait="):
            try:
                seconds = int(float(token[5:].strip()))
            except ValueError:
                return maximum
            return max(1, min(seconds, maximum))
    return None


CANCEL_AFTER_MIN_S = 5.0
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


def parse_cancel_after(header: str | None) -> float | None:
    """``Cancel-After``: ``90``, ``30s``, ``5m``, ``1h30m45s`` -> seconds (at least 5)."""
    if header is None or not header.strip():
        return None
    text = header.strip().lower()
    seconds: float | None = None
    try:
        seconds = float(text)
    except ValueError:
        match = _DURATION.fullmatch(text)
        if match and any(match.groups()):
            h, m, s = (float(g) if g else 0.0 for g in match.groups())
            seconds = h * 3600 + m * 60 + s
    if seconds is None or seconds < CANCEL_AFTER_MIN_S:
        raise errors.InputValidationFailed(
            [
                {
                    "type": "format",
                    "field": "Cancel-After",
                    "description": "a duration of at least 5s, like 30s, 5m or 1h30m",
                }
            ]
        )
    return seconds


async def create_and_respond(
    call: CreateCall,
    version: VersionInfo,
    body: PredictionCreate,
    *,
    deployment: str | None = None,
    placement: Placement | None = None,
) -> JSONResponse:
    """Create, then honour ``Prefer: wait`` (shared by the three create endpoints)."""
    services, base = call.services, call.base
    await services.webhooks.check_url(body.webhook)  # 422 for a URL the gateway won't call
    wait = parse_prefer_wait(call.prefer, services.settings.wait_max)
    p = await services.predictions.create(
        call.account,
        version,
        CreateRequest(
            input=body.input,
            webhook=body.webhook,
            webhook_events_filter=list(body.webhook_events_filter or []) or None,
            deployment=deployment,
            base_url=base,
            placement=placement,
            cancel_after=parse_cancel_after(call.cancel_after),
            hold=wait is not None,
        ),
    )
    if wait is None:
        return JSONResponse(render(p, base), status_code=201)
    await services.predictions.wait(p, wait)
    headers = {"Preference-Applied": f"wait={wait}", "Location": f"{base}/v1/predictions/{p.id}"}
    return JSONResponse(render_waiting(p, base), status_code=201, headers=headers)


@router.post("/predictions", status_code=201)
async def create_prediction(call: CreateCallDep) -> JSONResponse:
    body = parse_create(call.data)
    if not body.version:
        raise errors.InputValidationFailed(
            [{"type": "required", "field": "version", "description": "version is required"}]
        )
    version = await call.services.models.resolve(call.account, body.version)
    return await create_and_respond(call, version, body)


@router.post("/models/{owner}/{name}/predictions", status_code=201)
async def create_model_prediction(owner: str, name: str, call: CreateCallDep) -> JSONResponse:
    body = parse_create(call.data)
    version = await call.services.models.resolve(call.account, f"{owner}/{name}")
    return await create_and_respond(call, version, body)


@router.get("/predictions/{prediction_id}")
async def get_prediction(
    prediction_id: str, services: ServicesDep, account: CurrentAccount, base: BaseUrl
) -> JSONResponse:
    p = await services.predictions.get(account, prediction_id)
    return JSONResponse(render(p, base))


@router.get("/predictions")
async def list_predictions(
    services: ServicesDep,
    account: CurrentAccount,
    base: BaseUrl,
    url_for: PageUrl,
    cursor: str | None = None,
) -> JSONResponse:
    page = await services.predictions.list(account, cursor, url_for)
    return JSONResponse(page.body([render(p, base) for p in page.results]))


@router.post("/predictions/{prediction_id}/cancel")
async def cancel_prediction(
    prediction_id: str, services: ServicesDep, account: CurrentAccount, base: BaseUrl
) -> JSONResponse:
    p = await services.predictions.cancel(
        account, prediction_id, wait=services.settings.cancel_wait
    )
    return JSONResponse(render(p, base))
