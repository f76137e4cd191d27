"""The README's shell blocks, verbatim, against a gateway started the way `make run` starts it.

The blocks run from a scratch directory that looks like the repository root (`.venv` and
`predictors` linked in) with a fresh `.cogway/`, on port 8000, so `$(cat .cogway/admin-token)`
and the paths in them mean what they mean for a new user.
"""

import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ENV_CACHE, ROOT

pytestmark = pytest.mark.integration

PORT = 8000  # the README's port
BLOCK = re.compile(r"```sh\n(.*?)```", re.S)

# What each block must print, found by a line the block contains.
EXPECTED = {
    "Prefer: wait holds the request": [
        '"output":"hello Ada hello Ada"',
        '"status":"canceled"',
        '"title":"Input validation failed"',
        '"field":"input.repeat"',
        '"username":"admin"',
    ],
    'replicate.run("local/hello"': ["hello Python", "succeeded hello waited", "canceled"],
    "cogway push predictors/fixtures/typed": ['"output":"pushed:2:0.5:red"'],
    "/v1/deployments": ['"output":"hello deployment"', '"number":2', "is at release 3"],
    "cogway usage --by model": ["local/hello", '"by":"account"'],
    "predictors/embeddings --model": [
        '"model":"admin/embeddings"',
        "succeeded 384 dimensions",
        "similar: 0.",
    ],
    "predictors/vad --model": ["succeeded [{", "s of speech", "wrote speech-only.wav:"],
    "predictors/stream --model": ["beginning to get", "tokens so far"],
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", PORT)) == 0:
            pytest.fail(f"port {PORT} is taken; the README's demos need it")
    root = tmp_path_factory.mktemp("site")
    (root / ".venv").symlink_to(ROOT / ".venv")
    (root / "predictors").symlink_to(ROOT / "predictors")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("COGWAY_", "REPLICATE_"))},
        "COGWAY_RUNTIME__ENV_CACHE_DIR": str(ENV_CACHE),
        "COGWAY_METERING__BATCH_AGE": "0.2",
        "COGWAY_LOG_JSON": "true",
    }
    log = (root / "gateway.log").open("wb")
    proc = subprocess.Popen(
        [str(ROOT / ".venv/bin/cogway"), "serve", "--model", f"local/hello={ROOT}"],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, (root / "gateway.log").read_text()[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{PORT}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "gateway not ready"
            time.sleep(0.1)
        yield root
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()


def blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [b for b in BLOCK.findall(text) if "make run" not in b]


def test_every_shell_block_has_expectations() -> None:
    """A new README block must say here what it prints, so none goes untested."""
    for block in blocks():
        assert any(marker in block for marker in EXPECTED), block[:200]


def test_readme_blocks_run_verbatim(site: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COGWAY_", "REPLICATE_"))}
    for block in blocks():
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", block],
            cwd=site,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"{block[:300]}\n---\n{output[-3000:]}"
        for marker, wanted in EXPECTED.items():
            if marker in block:
                for piece in wanted:
                    assert piece in output, f"{piece!r} not in the output of:\n{block[:300]}"
        if "cogway usage" in block:
            continue
        time.sleep(0.3)  # usage objects are written within BATCH_AGE
