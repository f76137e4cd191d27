"""``create_app``: builds the FastAPI app around a ``Services`` container and owns its lifecycle.

Start-up order: schema -> admin account -> register and build the served models -> start the
metering writer (it ships what a previous run left) -> start the webhook deliverer (it resumes
pending deliveries) -> resume unfinished predictions -> boot the served models' instances -> ready.
Shutdown order (uvicorn has already stopped accepting connections): cancel builds -> stop
intake and drain the scheduler -> stop instances -> stop the webhook deliverer (completed
webhooks are in its outbox; attempts in flight get a short grace) -> commit queued prediction
writes -> flush the metering writer -> close the database.
"""

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from server import errors
from server.accounts import api as accounts_api
from server.accounts.service import Account
from server.deployments import api as deployments_api
from server.files import api as files_api
from server.jsoncodec import JSONResponse
from server.logging import RequestLogMiddleware
from server.metering import api as metering_api
from server.models import api as models_api
from server.models.service import VersionInfo, split_name
from server.predictions import api as predictions_api
from server.predictions.fastpath import HotPath
from server.scheduler import api as scheduler_api
from server.scheduler.instance import SetupFailed
from server.services import Services
from server.streams import api as streams_api
from server.webhooks import api as webhooks_api

log = structlog.get_logger("server.app")

ADMIN_TOKEN_FILE = "admin-token"


@dataclass
class Startup:
    """What the gateway serves from the start, and who to tell when it is ready."""

    models: list[tuple[str, Path]] = field(default_factory=list)
    """(owner/name, predictor directory) pairs registered and booted at start."""
    warm: bool = True
    """Boot each served model's instance before accepting traffic."""
    on_ready: Callable[["ReadyInfo"], None] | None = None


@dataclass
class ReadyInfo:
    versions: list[VersionInfo]
    admin_token: str | None
    """Set only on the first start (when the admin token was just generated)."""
    admin_token_file: Path | None
    cold_starts: dict[str, float]
    setup_failures: dict[str, str] = field(default_factory=dict)


async def _serve_directory(
    services: Services, admin: Account, full_name: str, directory: Path
) -> VersionInfo:
    """Create the model if needed and push ``directory`` to it, waiting for the build."""
    owner, name = split_name(full_name)
    if await services.models.find_model(owner, name) is None:
        await services.models.create_model(admin, owner=owner, name=name, visibility="public")
    version = await services.builds.push(admin, full_name, directory.resolve(), wait=True)
    if version.status != "ready":
        raise RuntimeError(f"Building {full_name} from {directory} failed:\n{version.build_error}")
    return version


class GatewayApp(FastAPI):
    """FastAPI with the request log and the prediction hot path in front of it.

    An HTTP request goes ``RequestLogMiddleware`` -> ``HotPath`` (create and get of
    predictions, answered there) -> FastAPI's own stack (error and telemetry middleware,
    router, dependencies) for everything else; lifespan events go straight to FastAPI.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._front = RequestLogMiddleware(HotPath(super().__call__, owner=self))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._front(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(services: Services, startup: Startup | None = None) -> FastAPI:
    startup = startup or Startup()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings = services.settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        await services.db.create()
        admin_token = settings.admin_token.get_secret_value() if settings.admin_token else None
        admin, new_token = await services.accounts.ensure_admin(
            settings.admin_username, admin_token
        )
        token_file: Path | None = settings.data_dir / ADMIN_TOKEN_FILE
        if new_token is not None:
            assert token_file is not None
            token_file.write_text(new_token + "\n")
            os.chmod(token_file, 0o600)
        elif admin_token is not None or token_file is None or not token_file.exists():
            token_file = None
        await services.builds.recover()
        versions = [
            await _serve_directory(services, admin, name, directory)
            for name, directory in startup.models
        ]
        if services.metering is not None:
            services.metering.start()
        await services.deliverer.start()
        await services.predictions.recover()
        for version, placement in await services.deployments.warm_placements():
            services.scheduler.apply(version, placement)  # min_instances boot in the background
        cold: dict[str, float] = {}
        failed: dict[str, str] = {}
        if startup.warm:
            for version in versions:
                try:
                    seconds = await services.scheduler.warm(version)
                except SetupFailed as exc:
                    # Keep serving the other models; this one's predictions fail with the reason.
                    failed[version.model] = str(exc)
                    continue
                if seconds is not None:
                    cold[version.model] = seconds
        if startup.on_ready is not None:
            startup.on_ready(ReadyInfo(versions, new_token, token_file, cold, failed))
        log.info("gateway_ready", models=[v.model for v in versions])
        try:
            yield
        finally:
            await services.builds.stop()
            await services.scheduler.stop()
            await services.deliverer.stop()  # after the scheduler: its last completions too
            await services.predictions.writes.stop()  # queued status writes commit
            if services.metering is not None:
                await services.metering.stop()  # after the scheduler: its last records too
            await services.db.dispose()
            log.info("gateway_stopped")

    app = GatewayApp(
        title="Cogway",
        lifespan=lifespan,
        redirect_slashes=False,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        default_response_class=JSONResponse,
        # Off: unconfigured, FastAPI still asks OpenTelemetry for three providers per request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.services = services
    errors.install_error_handlers(app)
    app.include_router(predictions_api.router)
    app.include_router(models_api.router)
    app.include_router(deployments_api.router)
    app.include_router(metering_api.router)
    app.include_router(scheduler_api.router)
    app.include_router(scheduler_api.metrics_router)
    app.include_router(webhooks_api.router)
    app.include_router(accounts_api.router)
    app.include_router(files_api.router)
    app.include_router(streams_api.router)

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
