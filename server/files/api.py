"""Routes for files: the ``/v1/files`` API, capability downloads and instances' output uploads.

``POST /v1/files`` reads ``multipart/form-data`` as both SDKs and curl send it: the ``content``
part, and ``metadata`` as a text field (Python client, curl) or as a JSON file part (JS client);
``filename`` and ``type`` override the part's own name and type.
"""

import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response, StreamingResponse
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from server import errors
from server.deps import BaseUrl, CurrentAccount, PageUrl, ServicesDep
from server.files.schemas import render
from server.files.service import StoredFile, payload_too_large
from server.jsoncodec import JSONResponse

router = APIRouter(prefix="/v1")

FORM_OVERHEAD_BYTES = 64 * 1024  # boundaries, part headers and the text fields around the file
READ_CHUNK_BYTES = 256 * 1024


def _invalid(field: str, description: str) -> errors.InputValidationFailed:
    return errors.InputValidationFailed(
        [{"type": "invalid", "field": field, "description": description}]
    )


def _check_length(request: Request, limit: int, *, slack: int = 0) -> None:
    """Refuse a declared ``Content-Length`` over the limit (plus slack) before reading it."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + slack:
        raise payload_too_large(limit)


async def _limited(request: Request, limit: int, *, slack: int) -> AsyncGenerator[bytes, None]:
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit + slack:
            raise payload_too_large(limit)
        yield chunk


async def _read_form(request: Request, limit: int) -> FormData:
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise errors.BadRequest("POST /v1/files takes multipart/form-data.")
    _check_length(request, limit, slack=FORM_OVERHEAD_BYTES)
    parser = MultiPartParser(
        request.headers,
        _limited(request, limit, slack=FORM_OVERHEAD_BYTES),
        max_files=4,
        max_fields=8,
        max_part_size=FORM_OVERHEAD_BYTES,
    )
    try:
        return await parser.parse()
    except MultiPartException as exc:
        raise errors.BadRequest(f"The multipart body could not be read: {exc.message}") from None


async def _text(value: str | UploadFile | None) -> str | None:
    if isinstance(value, UploadFile):
        return (await value.read()).decode("utf-8", errors="replace")
    return value


async def _metadata(value: str | UploadFile | None) -> dict[str, Any]:
    text = await _text(value)
    if text is None or not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        raise _invalid("metadata", "metadata must be a JSON object") from None
    if not isinstance(data, dict):
        raise _invalid("metadata", "metadata must be a JSON object")
    return data


async def _chunks(content: UploadFile | bytes) -> AsyncIterator[bytes]:
    if isinstance(content, bytes):
        yield content
        return
    while chunk := await content.read(READ_CHUNK_BYTES):
        yield chunk


@router.post("/files", status_code=201)
async def create_file(
    request: Request, account: CurrentAccount, services: ServicesDep, base: BaseUrl
) -> JSONResponse:
    limit = services.settings.files.max_upload_bytes
    form = await _read_form(request, limit)
    try:
        content = form.get("content")
        if content is None:
            raise errors.InputValidationFailed(
                [{"type": "required", "field": "content", "description": "content is required"}]
            )
        if isinstance(content, UploadFile) and content.size is not None and content.size > limit:
            raise payload_too_large(limit)
        name = await _text(form.get("filename"))
        content_type = await _text(form.get("type"))
        if isinstance(content, UploadFile):
            name = name or content.filename
            content_type = content_type or content.content_type
        metadata = await _metadata(form.get("metadata"))
        staged = await services.files.stage(
            _chunks(content if isinstance(content, UploadFile) else content.encode()),
            limit=limit,
            too_large=payload_too_large,
        )
    finally:
        await form.close()
    f = await services.files.create(
        account.id, staged, name=name, content_type=content_type, metadata=metadata
    )
    return JSONResponse(render(f, base), status_code=201)


@router.get("/files")
async def list_files(
    account: CurrentAccount,
    services: ServicesDep,
    base: BaseUrl,
    url_for: PageUrl,
    cursor: str | None = None,
) -> JSONResponse:
    page = await services.files.list(account, cursor, url_for)
    return JSONResponse(page.body([render(f, base) for f in page.results]))


@router.get("/files/{file_id}")
async def get_file(
    file_id: str, account: CurrentAccount, services: ServicesDep, base: BaseUrl
) -> JSONResponse:
    return JSONResponse(render(await services.files.get(account, file_id), base))


@router.delete("/files/{file_id}", status_code=204)
async def delete_file(file_id: str, account: CurrentAccount, services: ServicesDep) -> Response:
    await services.files.delete(account, file_id)
    return Response(status_code=204)


def _download_headers(f: StoredFile) -> dict[str, str]:
    return {
        "Content-Length": str(f.size),
        "ETag": f'"{f.md5}"',
        "Content-Disposition": f"inline; filename*=UTF-8''{quote(f.name, safe='')}",
        "Cache-Control": "private, max-age=3600",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",  # an uploaded HTML page runs no script here
    }


@router.api_route("/files/{file_id}/download/{token}", methods=["GET", "HEAD"])
@router.api_route("/files/{file_id}/download/{token}/{name}", methods=["GET", "HEAD"])
async def download_file(
    file_id: str, token: str, request: Request, services: ServicesDep
) -> Response:
    """The bytes, for anyone holding the URL; an ``Authorization`` header is ignored."""
    if request.method == "HEAD":
        f = await services.files.authorize_download(file_id, token)
        return Response(headers=_download_headers(f), media_type=f.content_type)
    f, chunks = await services.files.open_download(file_id, token)
    return StreamingResponse(chunks, headers=_download_headers(f), media_type=f.content_type)


@router.put("/uploads/{token}/{filename:path}")
async def upload_output(
    token: str,
    filename: str,
    request: Request,
    services: ServicesDep,
    x_prediction_id: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Cog's ``--upload-url``: one output file per ``PUT``; the URL to put in the prediction's
    output goes back in ``Location`` (Cog drops any query string, so the secret is a path)."""
    _check_length(request, services.settings.files.max_output_bytes)
    f = await services.files.store_output(
        token,
        prediction_id=x_prediction_id,
        name=filename,
        content_type=request.headers.get("content-type"),
        chunks=request.stream(),
    )
    url = services.files.public_url + f.download_path
    return JSONResponse({"id": f.id, "url": url}, headers={"Location": url})
