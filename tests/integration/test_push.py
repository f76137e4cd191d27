"""`cogway push` against a real gateway: real builds, the environment cache, the official client."""

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from replicate.client import Client

from server.cli.remote import archive
from tests.conftest import FIXTURES, ROOT
from tests.integration.gateway import Gateway, run_gateway

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with run_gateway(tmp_path_factory.mktemp("push"), {"acme/echo": FIXTURES / "echo"}) as gw:
        yield gw


def cogway_push(gw: Gateway, directory: Path, model: str) -> tuple[str, float, str]:
    """Run the CLI; return (version id, seconds until ready, what it printed on stderr)."""
    env = {**os.environ, "REPLICATE_API_TOKEN": gw.token, "COGWAY_URL": gw.url}
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "server", "push", str(directory), "--model", model],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1], time.monotonic() - began, done.stderr


def test_push_two_predictors_and_a_code_only_change(gateway: Gateway, tmp_path: Path) -> None:
    """Two predictors become runnable versions; a code-only change reuses the environment."""
    client = Client(api_token=gateway.token, base_url=gateway.url)
    typed_id, _, log = cogway_push(gateway, FIXTURES / "typed", "admin/typed")
    assert "Created model admin/typed" in log
    assert client.run(f"admin/typed:{typed_id}", input={"prompt": "p"}) == "p:1:0.5:red"

    slow = tmp_path / "slow"
    shutil.copytree(FIXTURES / "slow", slow)
    first_id, _, _ = cogway_push(gateway, slow, "admin/slow")
    again_id, _, _ = cogway_push(gateway, slow, "admin/slow")
    assert again_id == first_id  # same content, same version

    (slow / "predict.py").write_text(
        (slow / "predict.py").read_text().replace('f"slept {seconds}"', 'f"rested {seconds}"')
    )
    changed_id, seconds, log = cogway_push(gateway, slow, "admin/slow")
    assert changed_id != first_id
    assert "Reusing environment" in log
    assert seconds < 10, f"a code-only push took {seconds:.1f}s"
    assert client.run("admin/slow", input={"seconds": 0.1}) == "rested 0.1"
    assert client.run(f"admin/slow:{first_id}", input={"seconds": 0.1}) == "slept 0.1"

    model = client.models.get("admin/slow")
    assert [v.id for v in model.versions.list().results] == [changed_id, first_id]
    assert model.versions.get(first_id).id == first_id
    client._client.close()


def test_models_create_with_the_official_client(gateway: Gateway) -> None:
    client = Client(api_token=gateway.token, base_url=gateway.url)
    model = client.models.create(
        owner="admin", name="made-by-client", visibility="private", hardware="cpu"
    )
    assert (model.owner, model.name, model.visibility) == ("admin", "made-by-client", "private")
    assert client.models.get("admin/made-by-client").latest_version is None
    client._client.close()


def test_a_failing_pip_install_is_reported(gateway: Gateway, tmp_path: Path) -> None:
    """A build whose pip install fails ends failed, with pip's message, and is not runnable."""
    broken = tmp_path / "broken"
    shutil.copytree(FIXTURES / "echo", broken)
    (broken / "cog.yaml").write_text(
        'build:\n  python_version: "3.11"\n  python_packages: ["cogway-no-such-package==0.0.1"]\n'
        'predict: "predict.py:Predictor"\n'
    )
    env = {**os.environ, "REPLICATE_API_TOKEN": gateway.token, "COGWAY_URL": gateway.url}
    done = subprocess.run(
        [sys.executable, "-m", "server", "push", str(broken), "--model", "admin/broken"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert "Build failed" in done.stderr
    assert "cogway-no-such-package" in done.stderr
    auth = {"Authorization": f"Bearer {gateway.token}"}
    resp = httpx.post(
        f"{gateway.url}/v1/models/admin/broken/predictions", json={"input": {}}, headers=auth
    )
    assert resp.status_code == 422


def test_deployment_update_and_rollback(gateway: Gateway, tmp_path: Path) -> None:
    """Deploy v1 → predict → update to v2 → predict → `cogway rollback` → predict v1 again."""
    client = Client(api_token=gateway.token, base_url=gateway.url)
    src = tmp_path / "greeter"
    shutil.copytree(FIXTURES / "echo", src)
    v1, _, _ = cogway_push(gateway, src, "admin/greeter")
    (src / "predict.py").write_text(
        (src / "predict.py").read_text().replace("return text", 'return f"v2 {text}"')
    )
    v2, _, _ = cogway_push(gateway, src, "admin/greeter")

    deployment = client.deployments.create(
        name="greeter-prod",
        model="admin/greeter",
        version=v1,
        hardware="cpu",
        min_instances=0,
        max_instances=1,
    )
    assert deployment.current_release is not None
    assert deployment.current_release.number == 1

    def predict() -> str:
        prediction = client.deployments.predictions.create(
            "admin/greeter-prod", input={"text": "hi"}, wait=True
        )
        assert prediction.status == "succeeded"
        assert getattr(prediction, "deployment", "admin/greeter-prod") == "admin/greeter-prod"
        return str(prediction.output)

    assert predict() == "hi"
    updated = client.deployments.update("admin", "greeter-prod", version=v2)
    assert updated.current_release is not None
    assert (updated.current_release.number, updated.current_release.version) == (2, v2)
    assert predict() == "v2 hi"

    env = {**os.environ, "REPLICATE_API_TOKEN": gateway.token, "COGWAY_URL": gateway.url}
    done = subprocess.run(
        [sys.executable, "-m", "server", "rollback", "admin/greeter-prod", "--to", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"release 3: admin/greeter:{v1}" in done.stdout
    assert predict() == "hi"
    listed = client.deployments.list()
    assert "greeter-prod" in [d.name for d in listed.results]
    auth = {"Authorization": f"Bearer {gateway.token}"}
    in_use = httpx.delete(f"{gateway.url}/v1/models/admin/greeter/versions/{v1}", headers=auth)
    assert in_use.status_code == 409
    client._client.close()


def test_a_predictor_that_does_not_import_is_a_422_with_its_log(
    gateway: Gateway, tmp_path: Path
) -> None:
    """With Prefer: wait, the push answers 422 with the build log; nothing can run it."""
    broken = tmp_path / "noimport"
    shutil.copytree(FIXTURES / "echo", broken)
    (broken / "predict.py").write_text("import cogway_missing_module\n")
    auth = {"Authorization": f"Bearer {gateway.token}"}
    httpx.post(
        f"{gateway.url}/v1/models", json={"owner": "admin", "name": "noimport"}, headers=auth
    )
    resp = httpx.post(
        f"{gateway.url}/v1/models/admin/noimport/versions",
        content=archive(broken),
        headers={**auth, "Content-Type": "application/gzip", "Prefer": "wait"},
        timeout=120,
    )
    assert resp.status_code == 422
    body = resp.json()
    assert "No module named 'cogway_missing_module'" in body["detail"]
    assert "Loading predict.py:Predictor" in body["logs"]
    run = httpx.post(
        f"{gateway.url}/v1/models/admin/noimport/predictions", json={"input": {}}, headers=auth
    )
    assert run.status_code == 422
