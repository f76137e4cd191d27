"""Wire shapes of deployments: the create, update and rollback bodies, the deployment object."""

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from server import errors
from server.clock import isoformat
from server.deployments.service import Deployment

Body = TypeVar("Body", bound=BaseModel)


class DeploymentCreate(BaseModel):
    """Body of ``POST /v1/deployments``; every field is required (Replicate's OAS)."""

    model_config = ConfigDict(extra="ignore")

    name: str
    """The deployment's name; ``owner/name`` is accepted when owner is the caller."""
    model: str
    """The model to run, as ``owner/name``."""
    version: str
    """A 64-hex version id of that model."""
    hardware: str
    """A SKU from ``GET /v1/hardware``."""
    min_instances: int
    """Instances kept running even when idle (0 to 5)."""
    max_instances: int
    """The most instances the deployment scales to (0 to 20, at least ``min_instances``)."""


class DeploymentUpdate(BaseModel):
    """Body of ``PATCH /v1/deployments/{owner}/{name}``; give at least one field."""

    model_config = ConfigDict(extra="ignore")

    version: str | None = None
    """Another version of the deployment's model."""
    hardware: str | None = None
    """A SKU from ``GET /v1/hardware``."""
    min_instances: int | None = None
    """Instances kept running even when idle (0 to 5)."""
    max_instances: int | None = None
    """The most instances the deployment scales to (0 to 20)."""


class DeploymentRollback(BaseModel):
    """Body of ``POST /v1/deployments/{owner}/{name}/rollback`` (a Cogway extension)."""

    model_config = ConfigDict(extra="ignore")

    to: int | None = None
    """The release number to copy; the release before the current one when omitted."""


def parse(schema: type[Body], data: dict[str, Any]) -> Body:
    """Validate a JSON body; problems become a 422 with ``invalid_fields``."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise errors.invalid_fields(exc.errors()) from None


def render_deployment(d: Deployment) -> dict[str, Any]:
    """The deployment object exactly as Replicate returns it."""
    r = d.release
    return {
        "owner": d.owner,
        "name": d.name,
        "current_release": {
            "number": r.number,
            "model": r.model,
            "version": r.version,
            "created_at": isoformat(r.created_at),
            "created_by": {
                "type": r.created_by.type,
                "username": r.created_by.username,
                "name": r.created_by.name,
                "github_url": None,
                "avatar_url": None,
            },
            "configuration": {
                "hardware": r.hardware,
                "min_instances": r.min_instances,
                "max_instances": r.max_instances,
            },
        },
    }
