"""Files: store one (from a stream of chunks), read, list, delete, and serve its bytes.

Every file has two URLs. ``/v1/files/{id}`` is the API object (owner only, with a token).
``/v1/files/{id}/download/{secret}/{name}`` serves the bytes to anyone holding it, with or
without an ``Authorization`` header: a capability, so output URLs work in browsers, in the JS
client (which sends no headers) and in the Python client (which sends its token).
"""

import asyncio
import hashlib
import hmac
import mimetypes
import os
import secrets
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import structlog
from sqlalchemy import delete, select

from server import errors, ids
from server.accounts.service import Account
from server.clock import Clock
from server.db import Database
from server.files.blobs import BlobNotFound, BlobStore
from server.files.tables import FileRow
from server.pagination import Page, paginate
from server.predictions import tables as prediction_tables
from server.predictions.status import Status
from server.settings import Settings

log = structlog.get_logger("server.files")

NAME_MAX = 255
DEFAULT_NAME = "file"
OCTET_STREAM = "application/octet-stream"
PURGE_BATCH = 100  # expired files removed per new file (an amortized sweep)
WILDCARD_HOSTS = ("", "0.0.0.0", "::", "[::]")

TooLarge = Callable[[int], Exception]


@dataclass(frozen=True)
class StoredFile:
    id: str
    account_id: int
    name: str
    content_type: str
    size: int
    sha256: str
    md5: str
    metadata: dict[str, Any]
    source: str
    prediction_id: str | None
    token: str
    blob_key: str
    created_at: datetime
    expires_at: datetime | None

    @classmethod
    def from_row(cls, row: FileRow) -> "StoredFile":
        return cls(
            id=row.id,
            account_id=row.account_id,
            name=row.name,
            content_type=row.content_type,
            size=row.size,
            sha256=row.sha256,
            md5=row.md5,
            metadata=dict(row.file_metadata or {}),
            source=row.source,
            prediction_id=row.prediction_id,
            token=row.token,
            blob_key=row.blob_key,
            created_at=row.created_at,
            expires_at=row.expires_at,
        )

    @property
    def download_path(self) -> str:
        """The capability path that serves the bytes (the name keeps the extension for Cog)."""
        return f"/v1/files/{self.id}/download/{self.token}/{quote(self.name, safe='')}"


@dataclass(frozen=True)
class Staged:
    """An upload written to the staging area, with what it hashed to."""

    path: Path
    size: int
    sha256: str
    md5: str


def clean_name(name: str | None) -> str:
    """A file name without directories or control characters, at most 255 characters."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip()
    if base in ("", ".", ".."):
        return DEFAULT_NAME
    return base[-NAME_MAX:]


def clean_content_type(content_type: str | None, name: str) -> str:
    value = (content_type or "").strip()
    if "/" not in value or len(value) > NAME_MAX or not value.isprintable():
        value = ""
    return value or mimetypes.guess_type(name)[0] or OCTET_STREAM


def gateway_url(settings: Settings) -> str:
    """How instances (on this machine) reach the gateway."""
    if settings.files.internal_url:
        return settings.files.internal_url.rstrip("/")
    host = "127.0.0.1" if settings.host in WILDCARD_HOSTS else settings.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


class FilesService:
    def __init__(
        self, db: Database, clock: Clock, settings: Settings, blobs: BlobStore, staging: Path
    ) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self.blobs = blobs
        self.staging = staging
        self.upload_token = secrets.token_urlsafe(32)
        """Authenticates instances' output uploads; new on every start (so are instances)."""

    # -- URLs -------------------------------------------------------------------------------

    @property
    def gateway_url(self) -> str:
        return gateway_url(self.settings)

    @property
    def public_url(self) -> str:
        """The base of output URLs: ``public_url``, else the address instances use."""
        return (self.settings.public_url or self.gateway_url).rstrip("/")

    @property
    def upload_url(self) -> str | None:
        """What instances get as ``--upload-url`` (None: outputs stay ``data:`` URIs)."""
        if not self.settings.files.output_urls:
            return None
        return f"{self.gateway_url}/v1/uploads/{self.upload_token}"

    # -- storing --------------------------------------------------------------------------------

    async def stage(
        self, chunks: AsyncIterable[bytes], *, limit: int, too_large: TooLarge
    ) -> Staged:
        """Write ``chunks`` to a staging file, hashing as they come; stop past ``limit`` bytes."""
        await asyncio.to_thread(self.staging.mkdir, parents=True, exist_ok=True)
        fd, name = await asyncio.to_thread(tempfile.mkstemp, dir=self.staging, prefix="up-")
        path = Path(name)
        sha256, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > limit:
                        raise too_large(limit)
                    sha256.update(chunk)
                    md5.update(chunk)
                    await asyncio.to_thread(out.write, chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return Staged(path, size, sha256.hexdigest(), md5.hexdigest())

    async def create(
        self,
        account_id: int,
        staged: Staged,
        *,
        name: str | None,
        content_type: str | None,
        metadata: dict[str, Any] | None = None,
        source: str = "upload",
        prediction_id: str | None = None,
    ) -> StoredFile:
        """Move a staged upload into the store and record it."""
        file_id = ids.file_id()
        name = clean_name(name)
        now = self.clock.now()
        expire = self.settings.files.expire_after
        row = FileRow(
            id=file_id,
            account_id=account_id,
            name=name,
            content_type=clean_content_type(content_type, name),
            size=staged.size,
            sha256=staged.sha256,
            md5=staged.md5,
            file_metadata=metadata or {},
            source=source,
            prediction_id=prediction_id,
            token=secrets.token_urlsafe(24),
            blob_key=f"{file_id[:2]}/{file_id}",
            created_at=now,
            expires_at=now + timedelta(seconds=expire) if expire is not None else None,
        )
        try:
            await self.blobs.put(row.blob_key, staged.path, content_type=row.content_type)
        finally:
            await asyncio.to_thread(staged.path.unlink, missing_ok=True)
        async with self.db.session() as session:
            session.add(row)
            await session.commit()
        log.info("file_stored", file_id=file_id, size=row.size, source=source)
        if expire is not None:
            await self.purge_expired()
        return StoredFile.from_row(row)

    async def store_output(
        self,
        upload_token: str,
        *,
        prediction_id: str | None,
        name: str,
        content_type: str | None,
        chunks: AsyncIterable[bytes],
    ) -> StoredFile:
        """An instance's ``PUT`` of one output file, owned by the prediction's account."""
        if not hmac.compare_digest(upload_token.encode(), self.upload_token.encode()):
            raise errors.NotFound()
        account_id = await self._running_owner(prediction_id)
        limit = self.settings.files.max_output_bytes
        staged = await self.stage(chunks, limit=limit, too_large=payload_too_large)
        return await self.create(
            account_id,
            staged,
            name=name,
            content_type=content_type,
            source="output",
            prediction_id=prediction_id,
        )

    async def _running_owner(self, prediction_id: str | None) -> int:
        row = None
        if prediction_id:
            async with self.db.session() as session:
                row = (
                    await session.execute(
                        select(
                            prediction_tables.PredictionRow.account_id,
                            prediction_tables.PredictionRow.status,
                        ).where(prediction_tables.PredictionRow.id == prediction_id)
                    )
                ).first()
        if row is None or Status(row.status).is_terminal():
            raise errors.BadRequest("X-Prediction-ID names no running prediction.")
        return int(row.account_id)

    # -- reading ------------------------------------------------------------------------------

    async def find(self, file_id: str) -> StoredFile | None:
        """The file, whoever owns it; None when unknown or expired."""
        async with self.db.session() as session:
            row = await session.get(FileRow, file_id)
        if row is None or (row.expires_at is not None and row.expires_at <= self.clock.now()):
            return None
        return StoredFile.from_row(row)

    async def get(self, account: Account, file_id: str) -> StoredFile:
        found = await self.find(file_id)
        if found is None or found.account_id != account.id:
            raise errors.NotFound("File not found.")
        return found

    async def list(
        self, account: Account, cursor: str | None, url_for: Callable[[str], str]
    ) -> Page[StoredFile]:
        """The account's uploads (not prediction inputs or outputs), newest first."""
        stmt = select(FileRow).where(FileRow.account_id == account.id, FileRow.source == "upload")
        stmt = stmt.where((FileRow.expires_at.is_(None)) | (FileRow.expires_at > self.clock.now()))
        async with self.db.session() as session:
            page = await paginate(session, stmt, cursor=cursor, url_for=url_for)
        return Page([StoredFile.from_row(r) for r in page.results], page.next, page.previous)

    async def authorize_download(self, file_id: str, token: str) -> StoredFile:
        """The file a capability URL names; 404 for a wrong secret, as for an unknown id."""
        found = await self.find(file_id)
        if found is None or not hmac.compare_digest(found.token.encode(), token.encode()):
            raise errors.NotFound("File not found.")
        return found

    async def open_download(
        self, file_id: str, token: str
    ) -> tuple[StoredFile, AsyncIterator[bytes]]:
        """The file and its bytes behind a capability URL."""
        found = await self.authorize_download(file_id, token)
        try:
            return found, await self.blobs.open(found.blob_key)
        except BlobNotFound:
            log.error("file_blob_missing", file_id=file_id, blob_key=found.blob_key)
            raise errors.NotFound("File not found.") from None

    # -- deleting -----------------------------------------------------------------------------

    async def delete(self, account: Account, file_id: str) -> None:
        found = await self.get(account, file_id)
        await self._remove([found])
        log.info("file_deleted", file_id=file_id)

    async def _remove(self, files: Sequence[StoredFile]) -> None:
        for f in files:
            await self.blobs.delete(f.blob_key)
        async with self.db.session() as session:
            await session.execute(delete(FileRow).where(FileRow.id.in_([f.id for f in files])))
            await session.commit()

    async def purge_expired(self) -> int:
        """Delete up to a batch of expired files (rows and bytes); return how many."""
        async with self.db.session() as session:
            rows = (
                await session.scalars(
                    select(FileRow)
                    .where(FileRow.expires_at <= self.clock.now())
                    .order_by(FileRow.expires_at)
                    .limit(PURGE_BATCH)
                )
            ).all()
        if rows:
            await self._remove([StoredFile.from_row(r) for r in rows])
            log.info("files_expired", count=len(rows))
        return len(rows)


def payload_too_large(limit: int) -> Exception:
    """For ``stage(too_large=…)``: 413 with the limit in the detail."""
    return errors.PayloadTooLarge(f"The file is larger than the limit of {limit} bytes.")
