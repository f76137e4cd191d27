"""Routes for models and versions, including push (``POST …/versions`` with a tar.gz body)."""

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, ValidationError

from server import errors
from server.deps import BaseUrl, CurrentAccount, JsonObject, PageUrl, ServicesDep
from server.jsoncodec import JSONResponse
from server.models import upload
from server.models.schemas import render_build, render_model, render_version
from server.models.tables import ModelRow
from server.services import Services

router = APIRouter(prefix="/v1")


class BuildFailed(errors.APIError):
    """The version's build failed."""

    status_code = 422
    title = "Build failed"

    def __init__(self, detail: str, version_id: str, logs: str) -> None:
        super().__init__(detail)
        self.version_id = version_id
        self.logs = logs

    def body(self) -> dict[str, Any]:
        return {**super().body(), "version": self.version_id, "logs": self.logs}


class ModelCreate(BaseModel):
    """Body of ``POST /v1/models`` (Replicate's)."""

    model_config = ConfigDict(extra="ignore")

    owner: str
    """The account (namespace) that owns the model: yours, or any for the admin."""
    name: str
    """Lowercase letters, digits, '-', '_' and '.'."""
    visibility: str = "private"
    """public (every account may run it) or private (only its owner)."""
    hardware: str = "cpu"
    """A SKU from ``GET /v1/hardware``."""
    description: str | None = None
    github_url: str | None = None
    paper_url: str | None = None
    license_url: str | None = None
    cover_image_url: str | None = None


async def _model_body(services: Services, m: ModelRow, base: str) -> dict[str, Any]:
    return render_model(
        m,
        latest=await services.models.latest_version(m),
        run_count=await services.models.run_count(m),
        base_url=base,
    )


@router.post("/models", status_code=201)
async def create_model(
    account: CurrentAccount, data: JsonObject, services: ServicesDep, base: BaseUrl
) -> JSONResponse:
    try:
        body = ModelCreate.model_validate(data)
    except ValidationError as exc:
        raise errors.invalid_fields(exc.errors()) from None
    extra = body.model_dump(
        include={"description", "github_url", "paper_url", "license_url", "cover_image_url"}
    )
    model = await services.models.create_model(
        account,
        owner=body.owner,
        name=body.name,
        visibility=body.visibility,
        hardware=body.hardware,
        fields=extra,
    )
    return JSONResponse(await _model_body(services, model, base), status_code=201)


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


@router.post("/models/{owner}/{name}/versions", status_code=201)
async def push_version(
    owner: str,
    name: str,
    request: Request,
    account: CurrentAccount,
    services: ServicesDep,
    prefer: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Our extension of Replicate's API: the body is the predictor directory as a tar.gz.

    Answers at once with the version ``building``; with ``Prefer: wait`` it answers when the
    build is done, and a failed build is a 422 problem with the build log."""
    await services.models.get_model(account, owner, name)  # 404 before reading the upload
    settings = services.settings
    limit = settings.push_max_bytes
    with upload.Workspace(settings.data_dir / "uploads") as work:
        archive = work.path / "upload.tar.gz"
        await upload.receive(request.stream(), archive, limit=limit)
        directory = upload.extract(archive, work.path / "src", limit=limit)
        wait = bool(prefer and "wait" in prefer.lower())
        version = await services.builds.push(account, f"{owner}/{name}", directory, wait=wait)
    if version.status == "failed":
        build = await services.builds.status(version)
        raise BuildFailed(version.build_error or "The build failed.", version.id, build.logs)
    status = 201 if version.status == "building" or wait else 200
    return JSONResponse(render_version(version), status_code=status)


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


@router.get("/models/{owner}/{name}/versions/{version_id}/build")
async def get_build(
    owner: str,
    name: str,
    version_id: str,
    services: ServicesDep,
    account: CurrentAccount,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JSONResponse:
    """The build's status and log from ``offset`` on; poll with the returned offset."""
    version = await services.models.get_version(account, owner, name, version_id)
    return JSONResponse(render_build(version, await services.builds.status(version, offset)))


@router.delete("/models/{owner}/{name}/versions/{version_id}", status_code=202)
async def delete_version(
    owner: str, name: str, version_id: str, services: ServicesDep, account: CurrentAccount
) -> Response:
    in_use = await services.deployments.uses_version(version_id)
    await services.models.delete_version(account, owner, name, version_id, in_use=in_use)
    await services.scheduler.retire(version_id)
    return Response(status_code=202)
