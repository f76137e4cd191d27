"""Routes for deployments, their rollback, and predictions sent to a deployment."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from server.deployments.schemas import (
    DeploymentCreate,
    DeploymentRollback,
    DeploymentUpdate,
    parse,
    render_deployment,
)
from server.deployments.service import DeploymentService
from server.deps import CreateCallDep, CurrentAccount, JsonObject, PageUrl
from server.jsoncodec import JSONResponse
from server.predictions.api import create_and_respond
from server.predictions.schemas import parse_create

router = APIRouter(prefix="/v1")


async def get_deployments(request: Request) -> DeploymentService:
    service: DeploymentService = request.app.state.services.deployments
    return service


Deployments = Annotated[DeploymentService, Depends(get_deployments)]


@router.get("/deployments")
async def list_deployments(
    deployments: Deployments, account: CurrentAccount, url_for: PageUrl, cursor: str | None = None
) -> JSONResponse:
    page = await deployments.list(account, cursor, url_for)
    return JSONResponse(page.body([render_deployment(d) for d in page.results]))


@router.post("/deployments")
async def create_deployment(
    deployments: Deployments, account: CurrentAccount, data: JsonObject
) -> JSONResponse:
    body = parse(DeploymentCreate, data)
    deployment = await deployments.create(
        account,
        name=body.name,
        model=body.model,
        version=body.version,
        hardware=body.hardware,
        min_instances=body.min_instances,
        max_instances=body.max_instances,
    )
    return JSONResponse(render_deployment(deployment))


@router.get("/deployments/{owner}/{name}")
async def get_deployment(
    owner: str, name: str, deployments: Deployments, account: CurrentAccount
) -> JSONResponse:
    return JSONResponse(render_deployment(await deployments.get(account, owner, name)))


@router.patch("/deployments/{owner}/{name}")
async def update_deployment(
    owner: str, name: str, deployments: Deployments, account: CurrentAccount, data: JsonObject
) -> JSONResponse:
    body = parse(DeploymentUpdate, data)
    deployment = await deployments.update(
        account,
        owner,
        name,
        version=body.version,
        hardware=body.hardware,
        min_instances=body.min_instances,
        max_instances=body.max_instances,
    )
    return JSONResponse(render_deployment(deployment))


@router.delete("/deployments/{owner}/{name}", status_code=204)
async def delete_deployment(
    owner: str, name: str, deployments: Deployments, account: CurrentAccount
) -> Response:
    await deployments.delete(account, owner, name)
    return Response(status_code=204)


@router.post("/deployments/{owner}/{name}/rollback")
async def rollback_deployment(
    owner: str, name: str, deployments: Deployments, account: CurrentAccount, data: JsonObject
) -> JSONResponse:
    """Cogway's extension: a new release that copies an earlier one."""
    body = parse(DeploymentRollback, data)
    deployment = await deployments.rollback(account, owner, name, to=body.to)
    return JSONResponse(render_deployment(deployment))


@router.post("/deployments/{owner}/{name}/predictions", status_code=201)
async def create_deployment_prediction(
    owner: str, name: str, deployments: Deployments, call: CreateCallDep
) -> JSONResponse:
    """Run the current release's version in the deployment's own pool (its hardware and
    instance bounds); the prediction names the deployment."""
    body = parse_create(call.data)
    version, placement = await deployments.placement(call.account, owner, name)
    return await create_and_respond(
        call, version, body, deployment=f"{owner}/{name}", placement=placement
    )
