"""Webhook signing secrets: made on first use, stable afterwards."""

from sqlalchemy.exc import IntegrityError

from server.accounts.service import Account
from server.clock import Clock
from server.db import Database
from server.webhooks.signing import new_secret
from server.webhooks.tables import WebhookSecretRow


class WebhookService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self._secrets: dict[int, str] = {}

    async def secret(self, account: Account) -> str:
        """The account's signing secret (``whsec_…``), created the first time it is asked for."""
        cached = self._secrets.get(account.id)
        if cached is not None:
            return cached
        async with self.db.session() as session:
            row = await session.get(WebhookSecretRow, account.id)
            if row is None:
                row = WebhookSecretRow(
                    account_id=account.id, secret=new_secret(), created_at=self.clock.now()
                )
                session.add(row)
                try:
                    await session.commit()
                except IntegrityError:  # another request (or replica) made it first
                    await session.rollback()
                    row = await session.get(WebhookSecretRow, account.id)
                    assert row is not None
        self._secrets[account.id] = row.secret
        return row.secret
