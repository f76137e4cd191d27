"""Settings: read once from the environment (prefix ``COGWAY_``) at the edge and passed down.

Nested groups use ``__`` in the variable name, e.g. ``COGWAY_RUNTIME__START_TIMEOUT=60``.
No module builds a ``Settings`` at import time; ``server.__main__`` and the tests do.
"""

from pathlib import Path

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

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'cogway.db').resolve()}"

    def resolved_env_cache_dir(self) -> Path:
        return (self.runtime.env_cache_dir or self.data_dir / "envs").resolve()
