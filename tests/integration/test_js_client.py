"""The official JavaScript client (npm ``replicate``, pinned in tests/js/package.json) against a
real `cogway serve` subprocess, through the node scripts in tests/js.

Each script builds ``new Replicate({auth, baseUrl: <gateway>/v1})`` (only the base URL and the
token differ from what any Replicate user writes), does one thing and prints JSON to check here.
``npm ci`` runs on demand when tests/js/node_modules lacks the pinned client.
"""

import base64
import hashlib
import itertools
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

from tests.conftest import FIXTURES, ROOT, unavailable
from tests.integration.gateway import Gateway, run_gateway
from tests.integration.test_files_client import decode_solid, gradient_png, logged
from tests.webhook_receiver import Receiver, loopback_server

pytestmark = pytest.mark.integration

JS = ROOT / "tests" / "js"
NODE_TIMEOUT_S = 120.0


def _unavailable(reason: str) -> NoReturn:
    unavailable("the JavaScript client", reason)


def _pinned_version() -> str:
    lock = json.loads((JS / "package-lock.json").read_text())
    version: str = lock["packages"]["node_modules/replicate"]["version"]
    return version


def _installed_version() -> str | None:
    manifest = JS / "node_modules" / "replicate" / "package.json"
    if not manifest.is_file():
        return None
    version: str = json.loads(manifest.read_text())["version"]
    return version


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with tests/js/node_modules holding the locked client (`npm ci`)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _unavailable("node and npm are needed for the JavaScript client tests")
    if _installed_version() != _pinned_version():
        try:
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=JS,
                capture_output=True,
                text=True,
                timeout=600,
            )
        except subprocess.TimeoutExpired:
            _unavailable("npm ci in tests/js timed out")
        if done.returncode != 0:
            _unavailable(f"npm ci in tests/js failed:\n{done.stdout}\n{done.stderr}")
    assert _installed_version() == _pinned_version()
    return node


@dataclass
class Js:
    """Runs tests/js/<script>.mjs against the gateway and parses the JSON it prints."""

    node: str
    gateway: Gateway

    def __call__(self, script: str, args: dict[str, Any]) -> dict[str, Any]:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("COGWAY_")},
            "COGWAY_URL": self.gateway.url,
            "COGWAY_TOKEN": self.gateway.token,
        }
        done = subprocess.run(
            [self.node, str(JS / f"{script}.mjs"), json.dumps(args)],
            cwd=JS,
            env=env,
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT_S,
        )
        assert done.returncode == 0, f"{script}.mjs exited {done.returncode}:\n{done.stderr}"
        result: dict[str, Any] = json.loads(done.stdout)
        return result


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[Receiver, str]]:
    receiver = Receiver()
    with loopback_server(receiver) as url:
        yield receiver, url


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    models = {
        "acme/echo": FIXTURES / "echo",
        "acme/ticker": FIXTURES / "ticker",
        "acme/raises": FIXTURES / "predict_raises",
        "acme/files": FIXTURES / "files",
    }
    env = {"COGWAY_WEBHOOKS__ALLOW_PRIVATE_URLS": "true"}  # the receiver is on loopback
    with run_gateway(tmp_path_factory.mktemp("gw"), models, env=env) as gw:
        yield gw


@pytest.fixture
def js(node: str, gateway: Gateway) -> Js:
    return Js(node, gateway)


def api(gateway: Gateway, path: str) -> Any:
    resp = httpx.get(
        f"{gateway.url}/v1{path}", headers={"Authorization": f"Bearer {gateway.token}"}
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


def epoch_ms(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp).timestamp() * 1000


def test_run_by_model_name(js: Js) -> None:
    """replicate.run("owner/name") posts to the model's predictions with Prefer: wait."""
    got = js("run", {"ref": "acme/echo", "input": {"text": "from node ✓"}})
    assert "error" not in got, got["error"]
    assert got["output"] == "from node ✓"
    assert got["prediction"]["status"] == "succeeded"
    assert got["prediction"]["input"] == {"text": "from node ✓"}
    assert got["prediction"]["logs"].strip() == "echoing from node ✓"


def test_run_by_version(js: Js, gateway: Gateway) -> None:
    """replicate.run("owner/name:version") with the version models.get reports."""
    got = js("run", {"ref": "acme/echo", "input": {"text": "pinned"}, "pin": True})
    assert "error" not in got, got["error"]
    latest = api(gateway, "/models/acme/echo")["latest_version"]["id"]
    assert got["version"] == latest
    assert got["ref"] == f"acme/echo:{latest}"
    assert got["output"] == "pinned"
    assert got["prediction"]["version"] == latest


def test_run_throws_on_a_failed_prediction(js: Js) -> None:
    got = js("run", {"ref": "acme/raises", "input": {"x": -5}})
    assert got["error"].startswith("Prediction failed: ")
    assert "x must be non-negative" in got["error"]
    assert got["prediction"]["status"] == "failed"


def test_stream_yields_tokens_while_the_model_runs(js: Js) -> None:
    """replicate.stream reads urls.stream: output events t0..t7 in order, each with an id, the
    first one long before the prediction completed; String(event) concatenates the output."""
    count, every = 8, 0.2
    got = js("stream", {"ref": "acme/ticker", "input": {"count": count, "every": every}})
    tokens = [f"t{i}" for i in range(count)]
    events = got["events"]
    outputs = [e for e in events if e["event"] == "output"]
    assert [e["data"] for e in outputs] == tokens
    assert got["output"] == "".join(tokens)
    assert events[-1]["event"] == "done"
    assert "error" not in {e["event"] for e in events}
    ids = [int(e["id"]) for e in events]
    assert all(a < b for a, b in itertools.pairwise(ids)), ids
    logs = "".join(e["data"] for e in events if e["event"] == "logs")
    assert all(f"tick {i}" in logs for i in range(count)), logs
    prediction = got["prediction"]
    assert prediction["id"] == got["created"]["id"]
    assert prediction["status"] == "succeeded"
    assert prediction["output"] == tokens
    # Tokens arrived as the predictor yielded them, not all at the end.
    spread = outputs[-1]["at"] - outputs[0]["at"]
    assert spread > 1000, f"tokens arrived together ({spread} ms apart), not as yielded"
    early = epoch_ms(prediction["completed_at"]) - outputs[0]["at"]
    assert early > 1000, f"the first token came {early:.0f} ms before completion"


def test_validate_webhook(
    js: Js, gateway: Gateway, receiver: tuple[Receiver, str], tmp_path: Path
) -> None:
    """A prediction the JS client creates with a webhook; the delivery the loopback receiver
    got verifies with the package's validateWebhook, in every calling convention; a tampered
    body or another secret does not."""
    hooks, url = receiver
    made = js(
        "run",
        {
            "ref": "acme/echo",
            "input": {"text": "signed"},
            "webhook": f"{url}/js",
            "webhook_events_filter": ["completed"],
        },
    )
    assert made["output"] == "signed"
    prediction_id = made["prediction"]["id"]
    got = hooks.wait_for(lambda ds: any(d.path == "/js" for d in ds), timeout=30)
    delivery = next(d for d in got if d.path == "/js")
    assert delivery.json()["id"] == prediction_id
    assert delivery.json()["output"] == "signed"
    saved = tmp_path / "delivery.json"
    saved.write_text(json.dumps({"headers": delivery.headers, "body": delivery.body.decode()}))
    verdicts = js("webhook", {"delivery": str(saved)})
    assert verdicts["secret"] == api(gateway, "/webhooks/default/secret")["key"]
    delivery.validate(verdicts["secret"])  # the Python client agrees
    assert verdicts["genuine"] == {
        "request": True,
        "headers": True,
        "parts": True,
        "parts_with_crypto": True,
    }
    assert verdicts["tampered"] is False
    assert verdicts["tampered_request"] is False
    assert verdicts["wrong_secret"] is False


@pytest.mark.parametrize("mode", ["default", "upload", "inline"])
def test_file_input_and_output(js: Js, gateway: Gateway, tmp_path: Path, mode: str) -> None:
    """A File input (uploaded with POST /v1/files by the client's "default" or "upload"
    strategy, or a data: URI string) reaches the model byte for byte; the output the JS client
    reads back is exactly the PNG the model wrote.

    Not the client's own "data-uri" strategy: replicate 1.4.0 sends the serialized client
    (API token included) as the input there, see tests/js/files.mjs."""
    picture = tmp_path / "gradient.png"
    sent = gradient_png(13, 7)
    picture.write_bytes(sent)
    args: dict[str, Any] = {"ref": "acme/files", "png": str(picture), "input": {"color": "0080ff"}}
    if mode == "inline":
        args["inline"] = True
    else:
        args["fileEncodingStrategy"] = mode
    got = js("files", args)
    assert got["status"] == "succeeded"
    assert got["sent_sha256"] == hashlib.sha256(sent).hexdigest()
    assert logged(got["logs"], "read") == got["sent_sha256"]
    if mode == "inline":
        assert got["input_image"].startswith("data:image/png;base64,")
    else:
        assert got["input_image"].startswith(f"{gateway.url}/v1/files/")
    # Over plain http the client leaves output URLs as strings (it wraps https: and data:).
    assert got["output_type"] == "string"
    assert got["url"].startswith(f"{gateway.url}/v1/files/")
    assert got["url"].endswith("/painted.png")
    assert got["content_type"] == "image/png"
    served = base64.b64decode(got["base64"])
    assert hashlib.sha256(served).hexdigest() == got["sha256"] == logged(got["logs"], "wrote")
    assert decode_solid(served) == (13, 7, {bytes.fromhex("0080ff")})
