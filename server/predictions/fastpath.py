"""The prediction endpoints without FastAPI's routing and dependency solving: the hot path.

``HotPath`` is ASGI middleware that answers ``POST /v1/predictions``,
``POST /v1/models/{owner}/{name}/predictions``,
``POST /v1/deployments/{owner}/{name}/predictions`` and ``GET /v1/predictions/{id}`` (what
polling clients call) by calling the very route functions FastAPI would
(``server.predictions.api``, ``server.deployments.api``) with the same arguments; every other
request goes on to the app. The routes stay registered, so the
OpenAPI document still describes them.

It sits in front of the whole FastAPI app (``server.app.GatewayApp``), inside only the request
log: a hot request skips Starlette's error and telemetry middleware as well.

Why: FastAPI's router, dependency solver and exception middleware cost about 0.15 ms of CPU per
request, a tenth of the gateway's share of a trivial prediction; skipping them took 16 clients
from 555 to 676 predictions/s (README, "Gateway figures"). Errors are rendered exactly as the
app's handlers render them: ``APIError`` as its problem, anything unexpected as a logged
problem+json 500 (``errors.unexpected_error_response``).
"""

import re
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from server import errors
from server.auth import current_account
from server.deployments.api import create_deployment_prediction
from server.deps import base_url, create_call
from server.jsoncodec import JSONResponse
from server.predictions.api import create_model_prediction, create_prediction, get_prediction

Handler = Callable[[Request, dict[str, str]], Awaitable[JSONResponse]]


async def _create(request: Request, path: dict[str, str]) -> JSONResponse:
    return await create_prediction(await create_call(request))


async def _model(request: Request, path: dict[str, str]) -> JSONResponse:
    call = await create_call(request)
    return await create_model_prediction(path["owner"], path["name"], call)


async def _deployment(request: Request, path: dict[str, str]) -> JSONResponse:
    call = await create_call(request)
    deployments = request.app.state.services.deployments
    return await create_deployment_prediction(path["owner"], path["name"], deployments, call)


async def _get(request: Request, path: dict[str, str]) -> JSONResponse:
    account = await current_account(request)
    services = request.app.state.services
    return await get_prediction(path["id"], services, account, await base_url(request))


ROUTES: dict[str, list[tuple[re.Pattern[str], Handler]]] = {
    "POST": [
        (re.compile(r"/v1/predictions"), _create),
        (re.compile(r"/v1/models/(?P<owner>[^/]+)/(?P<name>[^/]+)/predictions"), _model),
        (re.compile(r"/v1/deployments/(?P<owner>[^/]+)/(?P<name>[^/]+)/predictions"), _deployment),
    ],
    "GET": [(re.compile(r"/v1/predictions/(?P<id>[^/]+)"), _get)],
}


class HotPath:
    """Answers the hot routes itself and passes every other request on to ``app``; ``owner``
    is the application the routes' ``request.app`` must name."""

    def __init__(self, app: ASGIApp, owner: Starlette) -> None:
        self.app = app
        self.owner = owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            for pattern, handler in ROUTES.get(scope["method"], ()):
                match = pattern.fullmatch(path)
                if match is not None:
                    scope["app"] = self.owner
                    request = Request(scope, receive)
                    try:
                        response = await handler(request, match.groupdict())
                    except errors.APIError as exc:
                        response = errors.api_error_response(path, exc)
                    except Exception:
                        response = errors.unexpected_error_response(scope["method"], path)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)
