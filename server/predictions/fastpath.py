"""The create endpoints without FastAPI's routing and dependency solving: the hot path.

``CreateFastPath`` is ASGI middleware that answers ``POST /v1/predictions``,
``POST /v1/models/{owner}/{name}/predictions`` and
``POST /v1/deployments/{owner}/{name}/predictions`` by calling the very route functions
FastAPI would (``server.predictions.api``, ``server.deployments.api``) with the same
``CreateCall``; every other request goes on to the app. The routes stay registered, so the
OpenAPI document still describes them.

Why: FastAPI's router, dependency solver and exception middleware cost about 0.15 ms of CPU per
request, a tenth of the gateway's share of a trivial prediction; skipping them took 16 clients
from 555 to 676 predictions/s (README, "Gateway figures"). Errors are rendered exactly as the
app's handlers render them: ``APIError`` here, anything unexpected by the same outer handler
(a problem+json 500).
"""

import re
from collections.abc import Awaitable, Callable

from fastapi.responses import JSONResponse
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from server import errors
from server.deployments.api import create_deployment_prediction
from server.deps import CreateCall, create_call
from server.predictions.api import create_model_prediction, create_prediction

Handler = Callable[[Request, CreateCall, dict[str, str]], Awaitable[JSONResponse]]


async def _create(request: Request, call: CreateCall, path: dict[str, str]) -> JSONResponse:
    return await create_prediction(call)


async def _model(request: Request, call: CreateCall, path: dict[str, str]) -> JSONResponse:
    return await create_model_prediction(path["owner"], path["name"], call)


async def _deployment(request: Request, call: CreateCall, path: dict[str, str]) -> JSONResponse:
    deployments = request.app.state.services.deployments
    return await create_deployment_prediction(path["owner"], path["name"], deployments, call)


ROUTES: list[tuple[re.Pattern[str], Handler]] = [
    (re.compile(r"/v1/predictions"), _create),
    (re.compile(r"/v1/models/(?P<owner>[^/]+)/(?P<name>[^/]+)/predictions"), _model),
    (re.compile(r"/v1/deployments/(?P<owner>[^/]+)/(?P<name>[^/]+)/predictions"), _deployment),
]


class CreateFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            for pattern, handler in ROUTES:
                match = pattern.fullmatch(path)
                if match is not None:
                    request = Request(scope, receive)
                    try:
                        call = await create_call(request)
                        response = await handler(request, call, match.groupdict())
                    except errors.APIError as exc:
                        response = errors.api_error_response(path, exc)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)
