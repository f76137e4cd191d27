"""Output files Cog inlined as ``data:`` URIs become files served at capability URLs.

Cog uploads a file output to ``--upload-url`` only when it is the output itself (or an item
of a list); a file inside an output object (``class Output(BaseModel): audio: Path``) comes
back inlined as base64. The gateway stores those too, so every file output is a URL whose
bytes are exactly what the predictor wrote.
"""

import base64
import binascii
import mimetypes
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote

import structlog

from server.files.service import FilesService, payload_too_large

log = structlog.get_logger("server.files.rehost")


def _decode(uri: str) -> tuple[str, bytes] | None:
    """(media type, bytes) of a base64 ``data:`` URI; None for anything else."""
    header, sep, payload = uri.partition(",")
    if not sep or not header.startswith("data:") or not header.endswith(";base64"):
        return None
    media_type = header[5:-7].split(";")[0] or "application/octet-stream"
    try:
        return media_type, base64.b64decode(unquote(payload), validate=True)
    except (binascii.Error, ValueError):
        return None


class OutputRehost:
    def __init__(self, files: FilesService) -> None:
        self.files = files

    async def __call__(self, account_id: int, prediction_id: str, output: Any) -> Any:
        if isinstance(output, str):
            return await self._one(account_id, prediction_id, output)
        if isinstance(output, list):
            return [await self(account_id, prediction_id, item) for item in output]
        if isinstance(output, dict):
            return {k: await self(account_id, prediction_id, v) for k, v in output.items()}
        return output

    async def _one(self, account_id: int, prediction_id: str, value: str) -> str:
        decoded = _decode(value) if value.startswith("data:") else None
        if decoded is None:
            return value
        media_type, data = decoded
        extension = mimetypes.guess_extension(media_type) or ""
        if media_type in ("audio/x-wav", "audio/wave"):
            extension = ".wav"

        async def chunks() -> AsyncIterator[bytes]:
            yield data

        limit = self.files.settings.files.max_output_bytes
        staged = await self.files.stage(chunks(), limit=limit, too_large=payload_too_large)
        stored = await self.files.create(
            account_id,
            staged,
            name=f"output{extension}",
            content_type=media_type,
            source="output",
            prediction_id=prediction_id,
        )
        log.info("output_rehosted", prediction_id=prediction_id, file_id=stored.id)
        return self.files.public_url + stored.download_path
