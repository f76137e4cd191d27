"""Wire shapes of models and versions (Replicate's model and version objects)."""

from typing import Any

from server.clock import isoformat
from server.models.builds import BuildStatus
from server.models.service import VersionInfo
from server.models.tables import ModelRow


def render_version(v: VersionInfo) -> dict[str, Any]:
    return {
        "id": v.id,
        "created_at": isoformat(v.created_at),
        "cog_version": v.cog_version,
        "openapi_schema": v.openapi_schema,
        "status": v.status,
    }


def render_build(v: VersionInfo, build: BuildStatus) -> dict[str, Any]:
    return {
        "version": v.id,
        "status": build.status,
        "logs": build.logs,
        "offset": build.offset,
        "error": build.error,
    }


def render_model(
    m: ModelRow, *, latest: VersionInfo | None, run_count: int, base_url: str
) -> dict[str, Any]:
    return {
        "url": f"{base_url}/v1/models/{m.owner}/{m.name}",
        "owner": m.owner,
        "name": m.name,
        "description": m.description,
        "visibility": m.visibility,
        "github_url": m.github_url,
        "paper_url": m.paper_url,
        "license_url": m.license_url,
        "run_count": run_count,
        "cover_image_url": m.cover_image_url,
        "default_example": None,
        "latest_version": render_version(latest) if latest else None,
        "is_official": False,
        "hardware": m.hardware,
    }
