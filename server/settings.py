"""Settings: read once from the environment (prefix ``COGWAY_``) at the edge and passed down.

Nested groups use ``__`` in the variable name, e.g. ``COGWAY_RUNTIME__START_TIMEOUT=60``.
No module builds a ``Settings`` at import time; ``server.__main__`` and the tests do.
"""

import socket
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PORT = 8000
DEFAULT_COG_VERSION = "0.23.1"
START_TIMEOUT_S = 300.0  # process spawn -> READY, setup() included
STOP_GRACE_S = 5.0  # after POST /shutdown, before SIGKILL of the process group
DRAIN_TIMEOUT_S = 30.0  # wait for in-flight predictions when stopping
WAIT_MAX_S = 60  # the most `Prefer: wait=N` may hold a request
CANCEL_WAIT_S = 2.0  # how long POST /cancel waits for the instance to confirm
PUSH_MAX_BYTES = 1 << 30  # 1 GiB of tar.gz


class RuntimeSettings(BaseModel):
    """How predictor instances are built and run on this machine."""

    env_cache_dir: Path | None = None
    """Where per-environment venvs live; defaults to ``<data_dir>/envs``."""
    cog_version: str = DEFAULT_COG_VERSION
    """The ``cog`` package installed into every predictor venv."""
    start_timeout: float = START_TIMEOUT_S
    """Seconds from process spawn until the instance must report READY."""
    stop_grace: float = STOP_GRACE_S
    """Seconds an instance gets to exit after ``POST /shutdown`` before it is killed."""
    drain_timeout: float = DRAIN_TIMEOUT_S
    """Seconds to wait for in-flight predictions when an instance stops."""
    pip_args: list[str] = Field(default_factory=list)
    """Extra arguments for every ``pip install`` into a predictor venv."""


DEFAULT_PRICES_PER_SECOND = {  # USD per second of predict time, in the spirit of public prices
    "cpu": Decimal("0.000100"),
    "gpu-t4": Decimal("0.000225"),
    "gpu-l40s": Decimal("0.000975"),
    "gpu-a100": Decimal("0.001400"),
    "gpu-h100": Decimal("0.001525"),
}
BATCH_RECORDS = 500  # a usage object holds at most this many records
BATCH_AGE_S = 5.0  # ... and is written once its oldest record is this old
MIN_BILLED_S = Decimal("0.1")  # time-billed predictions that ran are billed at least this long


class MeteringSettings(BaseModel):
    """Usage records: pricing, batching, and where the objects go."""

    enabled: bool = True
    gateway_id: str = Field(default_factory=socket.gethostname)
    """Written into every record: which gateway produced it."""
    currency: str = "USD"
    prices_per_second: dict[str, Decimal] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES_PER_SECOND)
    )
    """Per hardware SKU; a SKU missing here is billed at the ``cpu`` price."""
    price_per_invocation: dict[str, Decimal] = Field(default_factory=dict)
    """Keyed by ``owner/name`` of a model or deployment (the deployment wins)."""
    minimum_billed_seconds: Decimal = MIN_BILLED_S
    batch_records: int = BATCH_RECORDS
    batch_age: float = BATCH_AGE_S
    sink: Literal["local", "s3"] = "local"
    local_dir: Path | None = None
    """Where the local sink writes; defaults to ``<data_dir>/usage``."""
    s3_bucket: str = "cogway-usage"
    s3_prefix: str = "usage/"
    s3_endpoint_url: str | None = None
    """Any S3-compatible store: MinIO, R2, Ceph, moto (``http://127.0.0.1:5000``)."""
    s3_region: str = "us-east-1"


class Settings(BaseSettings):
    """Everything the gateway can be configured with."""

    model_config = SettingsConfigDict(
        env_prefix="COGWAY_", env_nested_delimiter="__", extra="ignore"
    )

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    public_url: str | None = None
    """Base URL clients see (``https://gw.example``); defaults to the request's own URL."""
    data_dir: Path = Path(".cogway")
    """SQLite file, built versions and the admin-token file live here."""
    database_url: str | None = None
    """SQLAlchemy URL; ``postgresql+asyncpg://…`` for PostgreSQL. Default: SQLite in data_dir."""
    database_schema: str | None = None
    """PostgreSQL only: keep Cogway's tables in this schema (created if missing)."""
    admin_username: str = "admin"
    admin_token: SecretStr | None = None
    """Use this token for the admin account instead of generating one."""
    model_name: str = "local/hello"
    """The name under which ``cogway serve`` registers the model in ``model_dir``."""
    model_dir: Path = Path()
    """The predictor directory (with cog.yaml) that ``cogway serve`` serves by default."""
    log_json: bool | None = None
    """JSON logs; default: JSON unless stderr is a terminal."""
    log_level: str = "info"
    push_max_bytes: int = PUSH_MAX_BYTES
    """The largest predictor upload (tar.gz) ``POST …/versions`` accepts."""
    wait_max: int = WAIT_MAX_S
    cancel_wait: float = CANCEL_WAIT_S
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    metering: MeteringSettings = Field(default_factory=MeteringSettings)

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'cogway.db').resolve()}"

    def resolved_usage_dir(self) -> Path:
        return (self.metering.local_dir or self.data_dir / "usage").resolve()

    def resolved_env_cache_dir(self) -> Path:
        return (self.runtime.env_cache_dir or self.data_dir / "envs").resolve()
