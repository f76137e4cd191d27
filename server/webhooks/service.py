"""Webhooks for the API: signing secrets (made on first use, stable afterwards), the URL policy
applied when a prediction is created, and the attempt log admins read."""

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from server import errors, urls
from server.accounts.service import Account
from server.clock import Clock
from server.db import Database
from server.pagination import Page, paginate
from server.settings import WebhookSettings
from server.webhooks.signing import new_secret
from server.webhooks.tables import WebhookAttemptRow, WebhookDeliveryRow, WebhookSecretRow

ATTEMPTS_PAGE = 100


class WebhookService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        settings: WebhookSettings | None = None,
        *,
        resolver: urls.Resolver = urls.resolve,
    ) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings or WebhookSettings()
        self.resolver = resolver
        self._secrets: dict[int, str] = {}

    async def secret(self, account: Account) -> str:
        """The account's signing secret (``whsec_…``), created the first time it is asked for."""
        return await self.secret_for(account.id)

    async def secret_for(self, account_id: int) -> str:
        cached = self._secrets.get(account_id)
        if cached is not None:
            return cached
        async with self.db.session() as session:
            row = await session.get(WebhookSecretRow, account_id)
            if row is None:
                row = WebhookSecretRow(
                    account_id=account_id, secret=new_secret(), created_at=self.clock.now()
                )
                session.add(row)
                try:
                    await session.commit()
                except IntegrityError:  # another request (or replica) made it first
                    await session.rollback()
                    row = await session.get(WebhookSecretRow, account_id)
                    assert row is not None
        self._secrets[account_id] = row.secret
        return row.secret

    async def check_url(self, url: str | None) -> None:
        """Refuse (422, field ``webhook``) a webhook URL the gateway will not call. An empty
        one means no webhook, as it is stored."""
        if not url:
            return
        try:
            await urls.check(
                url, allow_private=self.settings.allow_private_urls, resolver=self.resolver
            )
        except urls.UrlRefused as exc:
            raise errors.InputValidationFailed(
                [{"type": "webhook_url", "field": "webhook", "description": exc.reason}]
            ) from None

    async def attempts(
        self,
        prediction_id: str | None,
        *,
        cursor: str | None,
        url_for: Callable[[str], str],
    ) -> tuple[Page[WebhookAttemptRow], dict[str, str]]:
        """Delivery attempts, newest first (of one prediction, or all), and the current state of
        each attempt's message (pending, delivered, failed, superseded)."""
        stmt = select(WebhookAttemptRow)
        if prediction_id is not None:
            stmt = stmt.where(WebhookAttemptRow.prediction_id == prediction_id)
        async with self.db.session() as session:
            page = await paginate(
                session, stmt, cursor=cursor, url_for=url_for, limit=ATTEMPTS_PAGE
            )
            ids = {row.delivery_id for row in page.results}
            found = await session.execute(
                select(WebhookDeliveryRow.id, WebhookDeliveryRow.state).where(
                    WebhookDeliveryRow.id.in_(ids)
                )
            )
            states = {delivery_id: state for delivery_id, state in found}
        return page, states
