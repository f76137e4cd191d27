"""Routes for predictions: create (three ways), get, list, cancel. Thin: parse, call, render."""

from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse

from server import errors
from server.accounts.service import Account
from server.deps import BaseUrl, CurrentAccount, JsonObject, PageUrl, ServicesDep
from server.models.service import VersionInfo
from server.predictions.schemas import PredictionCreate, parse_create, render, render_waiting
from server.predictions.service import CreateRequest
from server.services import Services

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


async def create_and_respond(
    services: Services,
    account: Account,
    base: str,
    version: VersionInfo,
    body: PredictionCreate,
    prefer: str | None,
    *,
    deployment: str | None = None,
) -> JSONResponse:
    """Create, then honour ``Prefer: wait`` (shared by the three create endpoints)."""
    p = await services.predictions.create(
        account,
        version,
        CreateRequest(
            input=body.input,
            webhook=body.webhook,
            webhook_events_filter=list(body.webhook_events_filter or []) or None,
            deployment=deployment,
            base_url=base,
        ),
    )
    wait = parse_prefer_wait(prefer, services.settings.wait_max)
    if wait is None:
        return JSONResponse(render(p, base), status_code=201)
    await services.predictions.wait(p, wait)
    headers = {"Preference-Applied": f"wait={wait}", "Location": f"{base}/v1/predictions/{p.id}"}
    return JSONResponse(render_waiting(p, base), status_code=201, headers=headers)


@router.post("/predictions", status_code=201)
async def create_prediction(
    account: CurrentAccount,
    data: JsonObject,
    services: ServicesDep,
    base: BaseUrl,
    prefer: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    body = parse_create(data)
    if not body.version:
        raise errors.InputValidationFailed(
            [{"type": "required", "field": "version", "description": "version is required"}]
        )
    version = await services.models.resolve(account, body.version)
    return await create_and_respond(services, account, base, version, body, prefer)


@router.post("/models/{owner}/{name}/predictions", status_code=201)
async def create_model_prediction(
    owner: str,
    name: str,
    account: CurrentAccount,
    data: JsonObject,
    services: ServicesDep,
    base: BaseUrl,
    prefer: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    body = parse_create(data)
    version = await services.models.resolve(account, f"{owner}/{name}")
    return await create_and_respond(services, account, base, version, body, prefer)


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
