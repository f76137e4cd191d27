"""Accounts: the admin bootstrap, token creation and token -> account authentication."""

import time
from dataclasses import dataclass

import structlog
from sqlalchemy import select

from server import errors, ids
from server.accounts.tables import AccountRow, TokenRow
from server.clock import Clock
from server.db import Database

log = structlog.get_logger("server.accounts")

AUTH_CACHE_TTL_S = 10.0  # a token's account is looked up at most this often
AUTH_CACHE_SIZE = 1024  # past this many cached tokens, expired ones are dropped


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    username: str
    name: str
    type: str
    is_admin: bool

    @classmethod
    def from_row(cls, row: AccountRow) -> "Account":
        return cls(row.id, row.username, row.name, row.type, row.is_admin)


class AccountService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self._cache: dict[str, tuple[float, Account]] = {}
        """token -> (when looked up, its account). Keyed by the token itself, not its sha256:
        hashing every request's token was 1.5 % of the gateway's CPU per prediction."""

    async def authenticate(self, token: str) -> Account:
        """Return the token's account or raise Unauthenticated."""
        hit = self._cache.get(token)
        now = time.monotonic()
        if hit is not None and now - hit[0] < AUTH_CACHE_TTL_S:
            return hit[1]
        digest = ids.token_hash(token)
        async with self.db.session() as session:
            row = await session.scalar(
                select(AccountRow).join(TokenRow).where(TokenRow.token_hash == digest)
            )
        if row is None:
            raise errors.Unauthenticated()
        account = Account.from_row(row)
        if len(self._cache) >= AUTH_CACHE_SIZE:  # forget expired entries (and their tokens)
            self._cache = {t: e for t, e in self._cache.items() if now - e[0] < AUTH_CACHE_TTL_S}
        self._cache[token] = (now, account)
        return account

    async def get_or_create(self, username: str, *, is_admin: bool = False) -> Account:
        async with self.db.session() as session:
            row = await session.scalar(select(AccountRow).where(AccountRow.username == username))
            if row is None:
                row = AccountRow(
                    username=username,
                    name=username,
                    type="user",
                    is_admin=is_admin,
                    created_at=self.clock.now(),
                )
                session.add(row)
                await session.commit()
                log.info("account_created", username=username, is_admin=is_admin)
            return Account.from_row(row)

    async def add_token(self, account: Account, token: str, *, name: str = "") -> None:
        async with self.db.session() as session:
            digest = ids.token_hash(token)
            exists = await session.scalar(select(TokenRow.id).where(TokenRow.token_hash == digest))
            if exists is None:
                session.add(
                    TokenRow(
                        account_id=account.id,
                        token_hash=digest,
                        name=name,
                        created_at=self.clock.now(),
                    )
                )
                await session.commit()

    async def create_token(self, username: str, *, name: str = "") -> str:
        """Create (if needed) the account and a new token for it; the token is shown once."""
        account = await self.get_or_create(username)
        token = ids.api_token()
        await self.add_token(account, token, name=name)
        log.info("token_created", username=username, name=name)
        return token

    async def ensure_admin(self, username: str, token: str | None) -> tuple[Account, str | None]:
        """Make sure the admin account exists and can log in.

        Returns the admin and a newly generated token when one had to be made (first start,
        no ``COGWAY_ADMIN_TOKEN``); ``None`` when the admin already had a way in.
        """
        admin = await self.get_or_create(username, is_admin=True)
        if token is not None:
            await self.add_token(admin, token, name="COGWAY_ADMIN_TOKEN")
            return admin, None
        async with self.db.session() as session:
            has_token = await session.scalar(
                select(TokenRow.id).where(TokenRow.account_id == admin.id).limit(1)
            )
        if has_token is not None:
            return admin, None
        new = ids.api_token()
        await self.add_token(admin, new, name="admin (first start)")
        return admin, new
