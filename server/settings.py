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

from server.hardware import HardwareSettings

DEFAULT_PORT = 8000
DEFAULT_COG_VERSION = "0.23.1"
START_TIMEOUT_S = 300.0  # process spawn -> READY, setup() included
STOP_GRACE_S = 5.0  # after POST /shutdown, before SIGKILL of the process group
DRAIN_TIMEOUT_S = 30.0  # wait for in-flight predictions when stopping
WAIT_MAX_S = 60  # the most `Prefer: wait=N` may hold a request
CANCEL_WAIT_S = 2.0  # how long POST /cancel waits for the instance to confirm
PUSH_MAX_BYTES = 1 << 30  # 1 GiB of tar.gz
STREAM_KEEPALIVE_S = 15.0
IDLE_TIMEOUT_S = 300.0  # an instance idle this long is stopped (down to min_instances)
QUEUE_MAX = 1000  # queued predictions per pool before create answers 429
CANCEL_GRACE_S = 5.0  # a canceled prediction still running after this is killed with its instance
HEALTH_INTERVAL_S = 2.0


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
    max_instances: int = 1
    """Instances per version outside a deployment (deployments set their own)."""
    idle_timeout: float = IDLE_TIMEOUT_S
    """Seconds an instance may sit idle before it stops (versions outside a deployment
    scale to zero; deployments keep their ``min_instances``)."""
    scale_up_threshold: float = 1.0
    """Queued predictions per free slot above which another instance boots."""
    queue_max: int = QUEUE_MAX
    """Queued predictions per version (or deployment) before creates get 429."""
    max_run_time: float | None = None
    """Seconds a prediction may run before it is stopped and failed (None: no limit)."""
    cancel_grace: float = CANCEL_GRACE_S
    """Seconds a canceled prediction may keep running before its instance is killed."""
    health_interval: float = HEALTH_INTERVAL_S
    """How often each READY instance's ``/health-check`` is polled."""
    health_failures: int = 3
    """Consecutive failed health checks after which an instance is replaced."""
    cpu_policy: Literal["batch", "normal"] = "batch"
    """Linux scheduling policy of local instances: ``batch`` (``SCHED_BATCH``) keeps their
    fair share of CPU but a woken instance thread does not preempt the gateway mid-request;
    ``normal`` is the default policy."""


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


UPLOAD_MAX_BYTES = 100 << 20  # POST /v1/files: Replicate's limit
OUTPUT_MAX_BYTES = 1 << 30  # one output file an instance uploads
FETCH_MAX_BYTES = 100 << 20  # one http(s) file input the gateway downloads
FETCH_TIMEOUT_S = 30.0  # the whole download of one http(s) file input


class FilesSettings(BaseModel):
    """The files API, file inputs (URLs the gateway resolves) and file outputs (uploads)."""

    backend: Literal["local", "s3"] = "local"
    local_dir: Path | None = None
    """Where the local backend keeps the bytes; defaults to ``<data_dir>/files``."""
    s3_bucket: str = "cogway-files"
    s3_prefix: str = "files/"
    s3_endpoint_url: str | None = None
    """Any S3-compatible store: MinIO, R2, Ceph, moto."""
    s3_region: str = "us-east-1"
    max_upload_bytes: int = UPLOAD_MAX_BYTES
    """The largest file ``POST /v1/files`` accepts (413 above)."""
    max_output_bytes: int = OUTPUT_MAX_BYTES
    """The largest output file an instance may upload (the prediction fails above)."""
    fetch_max_bytes: int = FETCH_MAX_BYTES
    """The largest http(s) file input the gateway downloads (422 above)."""
    fetch_timeout: float = FETCH_TIMEOUT_S
    """Seconds for the whole download of one http(s) file input."""
    fetch_max_redirects: int = 5
    allow_private_urls: bool = False
    """Let file inputs point at loopback, private and link-local addresses (off: SSRF guard)."""
    expire_after: float | None = None
    """Seconds after which a file is deleted (``expires_at``); None keeps files until deleted."""
    output_urls: bool = True
    """Instances upload file outputs to the gateway (URLs in ``output``); off: ``data:`` URIs."""
    internal_url: str | None = None
    """How instances reach the gateway; defaults to ``http://<host>:<port>`` (loopback for a
    wildcard host)."""


WEBHOOK_TIMEOUT_S = 10.0  # one delivery attempt, connect to last byte of the answer
WEBHOOK_RETRY_MAX_ELAPSED_S = 60.0  # the last retry of a completed webhook, after the event
WEBHOOK_RETRY_MAX_ATTEMPTS = 10
WEBHOOK_BACKOFF_BASE_S = 1.0  # first retry after about this long, then doubling
WEBHOOK_BACKOFF_CAP_S = 20.0
WEBHOOK_THROTTLE_S = 0.5  # output/logs webhooks of one prediction at least this far apart
WEBHOOK_CONCURRENCY = 32  # attempts in flight at once, all receivers together
WEBHOOK_STOP_GRACE_S = 5.0  # at shutdown, how long in-flight attempts may finish


class WebhookSettings(BaseModel):
    """Webhook delivery: which destinations are allowed, timeouts, retries and throttling."""

    allow_private_urls: bool = False
    """Allow webhook URLs on loopback, private, link-local or reserved addresses (tests, labs)."""
    timeout: float = Field(WEBHOOK_TIMEOUT_S, gt=0)
    """Seconds one delivery attempt may take."""
    retry_max_elapsed: float = Field(WEBHOOK_RETRY_MAX_ELAPSED_S, ge=0)
    """Seconds after the prediction completed when the last retry of its webhook goes out."""
    retry_max_attempts: int = Field(WEBHOOK_RETRY_MAX_ATTEMPTS, ge=1)
    """The most attempts of a completed webhook (the first one included)."""
    backoff_base: float = Field(WEBHOOK_BACKOFF_BASE_S, gt=0)
    backoff_cap: float = Field(WEBHOOK_BACKOFF_CAP_S, gt=0)
    throttle: float = Field(WEBHOOK_THROTTLE_S, ge=0)
    """Seconds between two output/logs webhooks of one prediction (the latest state is sent)."""
    intermediate_attempts: int = Field(1, ge=1)
    """Attempts of a start, output or logs webhook (1: never retried, like Replicate)."""
    max_concurrency: int = Field(WEBHOOK_CONCURRENCY, ge=1)
    stop_grace: float = Field(WEBHOOK_STOP_GRACE_S, ge=0)


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
    stream_keepalive: float = STREAM_KEEPALIVE_S
    """Seconds between keepalive comments on an idle ``urls.stream`` connection."""
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    hardware: HardwareSettings = Field(default_factory=HardwareSettings)
    metering: MeteringSettings = Field(default_factory=MeteringSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    files: FilesSettings = Field(default_factory=FilesSettings)

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'cogway.db').resolve()}"

    def resolved_usage_dir(self) -> Path:
        return (self.metering.local_dir or self.data_dir / "usage").resolve()

    def resolved_env_cache_dir(self) -> Path:
        return (self.runtime.env_cache_dir or self.data_dir / "envs").resolve()
