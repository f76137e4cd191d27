"""Shared fixtures: settings, databases (SQLite and PostgreSQL), and the app over ASGI."""

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from server.app import Startup, create_app
from server.hardware import Inventory
from server.logging import configure_logging
from server.services import Services, build_services
from server.settings import Settings
from tests.fakes import FakeBuilder, FakeRuntime

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "predictors" / "fixtures"
ENV_CACHE = ROOT / ".cache" / "envs"
POSTGRES_URL = os.environ.get(
    "COGWAY_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
ADMIN_TOKEN = "cgw_test-admin-token"


@pytest.fixture(scope="session", autouse=True)
def quiet_logs() -> None:
    configure_logging(json=False, level="warning")


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests build Settings explicitly; no COGWAY_ variable from the shell leaks in."""
    for key in list(os.environ):
        if key.startswith("COGWAY_") and key != "COGWAY_TEST_POSTGRES_URL":
            monkeypatch.delenv(key)


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "admin_token": ADMIN_TOKEN,
        "runtime": {"env_cache_dir": ENV_CACHE, "drain_timeout": 5.0, "stop_grace": 2.0},
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def unavailable(what: str, reason: str) -> NoReturn:
    """A server or tool the suite needs is missing (PostgreSQL, moto's S3 server, the
    JavaScript client): under CI (``CI`` 1, true or yes, any case) the test fails, elsewhere it
    is skipped."""
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(f"{what} is unavailable under CI: {reason}")
    pytest.skip(f"{what} is unavailable: {reason}")


async def _postgres_schema() -> str:
    """A fresh schema in the local PostgreSQL; under CI an unreachable server fails the test."""
    schema = f"cogway_test_{uuid.uuid4().hex[:10]}"
    engine = create_async_engine(POSTGRES_URL)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OSError as exc:
        unavailable(f"PostgreSQL at {POSTGRES_URL}", str(exc))
    finally:
        await engine.dispose()
    return schema


async def _drop_schema(schema: str) -> None:
    engine = create_async_engine(POSTGRES_URL)
    async with engine.begin() as conn:
        await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    await engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
async def db_settings(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Settings]:
    """Settings pointing at SQLite, then at PostgreSQL (the store must behave the same)."""
    if request.param == "sqlite":
        yield make_settings(tmp_path)
        return
    schema = await _postgres_schema()
    try:
        yield make_settings(tmp_path, database_url=POSTGRES_URL, database_schema=schema)
    finally:
        await _drop_schema(schema)


@dataclass
class Api:
    client: httpx.AsyncClient
    services: Services
    runtime: FakeRuntime
    model: str
    version_id: str
    transport: httpx.ASGITransport


@asynccontextmanager
async def serving(app: FastAPI, *, timeout: float = 60) -> AsyncIterator[httpx.AsyncClient]:
    """The app started (its lifespan) and an admin client that calls it over ASGI."""
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://gw.test",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=timeout,
        ) as client,
    ):
        yield client


async def open_api(
    settings: Settings, runtime: FakeRuntime, inventory: Inventory | None = None
) -> AsyncIterator[Api]:
    services = build_services(
        settings,
        runtime=runtime,
        builder=FakeBuilder(),
        client_factory=runtime.client_for,
        inventory=inventory,
    )
    app = create_app(services, Startup(models=[("acme/echo", FIXTURES / "echo")], warm=False))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gw.test", headers=headers
        ) as client:
            version = await services.models.resolve(
                await services.accounts.authenticate(ADMIN_TOKEN), "acme/echo"
            )
            yield Api(client, services, runtime, "acme/echo", version.id, transport)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    """The whole app over ASGI with a fake runtime and builder, on SQLite."""
    async for value in open_api(make_settings(tmp_path), FakeRuntime()):
        yield value
