"""Build a version for the local runtime: its venv plus its OpenAPI document.

The document is produced by introspecting the predictor inside its own venv
(``introspect.py``). The API keeps it as the version's ``openapi_schema``; the instance gets a
copy in ``.cog/openapi_schema.json`` with ``x-cog-streaming`` switched on, because the gateway
always dispatches over Cog's SSE stream (README, "Why SSE to the instance").
"""

import asyncio
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from server.runtime import cogyaml
from server.runtime.envs import BUILD_LOG_TAIL, BuildLog, EnvBuildFailed, EnvCache

log = structlog.get_logger("server.runtime.builder")

__all__ = ["BuildLog", "BuildResult", "LocalBuilder"]

INTROSPECT_SCRIPT = Path(__file__).with_name("introspect.py")
INTROSPECT_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class BuildResult:
    env_dir: Path
    openapi_schema: dict[str, Any]
    concurrency: int
    cog_version: str


class LocalBuilder:
    def __init__(self, envs: EnvCache) -> None:
        self.envs = envs

    async def build(
        self, source_dir: Path, config: cogyaml.CogConfig, *, log: BuildLog | None = None
    ) -> BuildResult:
        say = log or (lambda line: None)
        env_dir = await self.envs.ensure(config.python_version, config.packages, log=say)
        say(f"Loading {config.predict_ref} to read its inputs and output")
        facts = await self._introspect(env_dir, source_dir, config.predict_ref)
        schema: dict[str, Any] = facts["schema"]
        concurrency = config.concurrency or int(facts.get("concurrent_max") or 1)
        if concurrency > 1 and not facts.get("is_async"):
            raise EnvBuildFailed(
                f"Concurrency {concurrency} needs an async predict(); this predictor is sync."
            )
        instance_schema = json.loads(json.dumps(schema))
        instance_schema["paths"]["/predictions"]["post"]["x-cog-streaming"] = True
        cog_dir = source_dir / ".cog"
        cog_dir.mkdir(exist_ok=True)
        (cog_dir / "openapi_schema.json").write_text(json.dumps(instance_schema))
        inputs = ", ".join(schema["components"]["schemas"]["Input"].get("properties", {}))
        say(f"Inputs: {inputs or '(none)'}; concurrency {concurrency}")
        return BuildResult(env_dir, schema, concurrency, self.envs.cog_version)

    async def _introspect(self, env_dir: Path, source_dir: Path, ref: str) -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "facts.json"
            proc = await asyncio.create_subprocess_exec(
                str(env_dir / "bin" / "python"),
                str(INTROSPECT_SCRIPT),
                ref,
                str(out),
                cwd=source_dir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            try:
                text, _ = await asyncio.wait_for(proc.communicate(), INTROSPECT_TIMEOUT_S)
            except TimeoutError:
                proc.kill()
                raise EnvBuildFailed("Loading the predictor timed out.") from None
            if proc.returncode != 0 or not out.exists():
                output = text.decode(errors="replace")[-BUILD_LOG_TAIL:]
                raise EnvBuildFailed(f"The predictor '{ref}' could not be loaded:\n{output}")
            facts: dict[str, Any] = json.loads(out.read_text())
            return facts
