"""Routes for models and versions."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from server.deps import BaseUrl, CurrentAccount, PageUrl, ServicesDep
from server.models.schemas import render_model, render_version
from server.models.tables import ModelRow
from server.services import Services

router = APIRouter(prefix="/v1")


async def _model_body(services: Services, m: ModelRow, base: str) -> dict[str, object]:
    return render_model(
        m,
        latest=await services.models.latest_version(m),
        run_count=await services.models.run_count(m),
        base_url=base,
    )


@router.get("/models")
async def list_models(
    services: ServicesDep,
    account: CurrentAccount,
    base: BaseUrl,
    url_for: PageUrl,
    cursor: str | None = None,
) -> JSONResponse:
    page = await services.models.list_models(account, cursor, url_for)
    return JSONResponse(page.body([await _model_body(services, m, base) for m in page.results]))


@router.get("/models/{owner}/{name}")
async def get_model(
    owner: str, name: str, services: ServicesDep, account: CurrentAccount, base: BaseUrl
) -> JSONResponse:
    model = await services.models.get_model(account, owner, name)
    return JSONResponse(await _model_body(services, model, base))


@router.get("/models/{owner}/{name}/versions")
async def list_versions(
    owner: str,
    name: str,
    services: ServicesDep,
    account: CurrentAccount,
    url_for: PageUrl,
    cursor: str | None = None,
) -> JSONResponse:
    model = await services.models.get_model(account, owner, name)
    page = await services.models.list_versions(model, cursor, url_for)
    return JSONResponse(page.body([render_version(v) for v in page.results]))


@router.get("/models/{owner}/{name}/versions/{version_id}")
async def get_version(
    owner: str, name: str, version_id: str, services: ServicesDep, account: CurrentAccount
) -> JSONResponse:
    version = await services.models.get_version(account, owner, name, version_id)
    return JSONResponse(render_version(version))
