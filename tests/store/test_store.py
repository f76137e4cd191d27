"""The store behaves the same on SQLite and PostgreSQL (each test runs on both)."""

from datetime import UTC

import pytest
from sqlalchemy import select

from server import errors
from server.accounts import service as accounts_service
from server.accounts.tables import TokenRow
from server.predictions.status import Status
from server.predictions.tables import PredictionRow
from server.settings import Settings
from tests.conftest import ADMIN_TOKEN, open_api
from tests.fakes import FakeRuntime

pytestmark = pytest.mark.anyio


async def test_tokens_are_stored_hashed(db_settings: Settings) -> None:
    """A token authenticates its account; only its sha256 is in the database."""
    async for api in open_api(db_settings, FakeRuntime()):
        token = await api.services.accounts.create_token("bob", name="laptop")
        account = await api.services.accounts.authenticate(token)
        assert account.username == "bob"
        async with api.services.db.session() as session:
            stored = list(await session.scalars(select(TokenRow.token_hash)))
        assert token not in stored
        assert all(len(h) == 64 for h in stored)
        assert len(stored) == 2  # the admin's and bob's


async def test_the_auth_cache_forgets_expired_tokens(
    db_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cached lookups are keyed by token; once the cache is full, expired tokens leave it."""
    monkeypatch.setattr(accounts_service, "AUTH_CACHE_SIZE", 2)
    async for api in open_api(db_settings, FakeRuntime()):
        accounts = api.services.accounts
        first = await accounts.create_token("bob", name="one")
        second = await accounts.create_token("bob", name="two")
        assert (await accounts.authenticate(first)).username == "bob"
        assert (await accounts.authenticate(ADMIN_TOKEN)).is_admin
        assert set(accounts._cache) == {first, ADMIN_TOKEN}
        expired = accounts_service.AUTH_CACHE_TTL_S + 1  # both lookups are that old now
        accounts._cache = {t: (at - expired, a) for t, (at, a) in accounts._cache.items()}
        assert (await accounts.authenticate(second)).username == "bob"
        assert set(accounts._cache) == {second}
        with pytest.raises(errors.Unauthenticated):
            await accounts.authenticate(second + "x")
        assert set(accounts._cache) == {second}


async def test_prediction_lifecycle_is_written_through(db_settings: Settings) -> None:
    """Create and completion land in the database with aware UTC timestamps."""
    async for api in open_api(db_settings, FakeRuntime()):
        body = (
            await api.client.post(
                "/v1/predictions",
                json={"version": api.version_id, "input": {"text": "pg"}},
                headers={"Prefer": "wait"},
            )
        ).json()
        assert body["status"] == "succeeded"
        async with api.services.db.session() as session:
            row = await session.get(PredictionRow, body["id"])
        assert row is not None
        assert (row.status, row.output, row.logs) == (Status.SUCCEEDED, "pg", "echoing\n")
        assert row.input == {"text": "pg"}
        assert row.created_at.tzinfo == UTC
        assert row.completed_at is not None
        assert row.completed_at >= row.created_at
        assert set(row.metrics) >= {"predict_time", "total_time"}


async def test_pagination_orders_newest_first(
    db_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("server.pagination.PAGE_SIZE", 3)
    async for api in open_api(db_settings, FakeRuntime()):
        ids = []
        for i in range(7):
            resp = await api.client.post(
                "/v1/predictions",
                json={"version": api.version_id, "input": {"text": str(i)}},
                headers={"Prefer": "wait"},
            )
            ids.append(resp.json()["id"])
        seen: list[str] = []
        url = "/v1/predictions"
        while url:
            page = (await api.client.get(url)).json()
            seen += [p["id"] for p in page["results"]]
            url = page["next"]
        assert seen == list(reversed(ids))


async def test_restart_keeps_models_accounts_and_predictions(db_settings: Settings) -> None:
    """A second start on the same database finds everything the first one wrote."""
    async for api in open_api(db_settings, FakeRuntime()):
        created = (
            await api.client.post(
                "/v1/predictions",
                json={"version": api.version_id, "input": {}},
                headers={"Prefer": "wait"},
            )
        ).json()
        first_version = api.version_id
    async for api in open_api(db_settings, FakeRuntime()):
        assert api.version_id == first_version
        again = (await api.client.get(f"/v1/predictions/{created['id']}")).json()
        assert again == created | {"metrics": again["metrics"]}
        account = await api.services.accounts.authenticate(ADMIN_TOKEN)
        assert account.is_admin
