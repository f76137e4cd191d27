"""The file object clients parse (Replicate's shape, which the Python client checks strictly)."""

from typing import Any

from server.clock import isoformat
from server.files.service import StoredFile


def render(f: StoredFile, base_url: str) -> dict[str, Any]:
    """``POST``/``GET /v1/files…``: ``urls.get`` is the API object, ``urls.download`` the bytes."""
    return {
        "id": f.id,
        "name": f.name,
        "content_type": f.content_type,
        "size": f.size,
        "etag": f.md5,
        "checksums": {"sha256": f.sha256, "md5": f.md5},
        "metadata": f.metadata,
        "created_at": isoformat(f.created_at),
        "expires_at": isoformat(f.expires_at),
        "urls": {
            "get": f"{base_url}/v1/files/{f.id}",
            "download": f"{base_url}{f.download_path}",
        },
    }
