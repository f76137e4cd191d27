"""The official replicate==1.0.7 Python client against a real `cogway serve` subprocess.

Only the base URL and token change, as for any Replicate user.
"""

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from replicate.client import Client
from replicate.exceptions import ModelError, ReplicateError
from replicate.stream import ServerSentEvent

from tests.conftest import FIXTURES
from tests.integration.gateway import Gateway, run_gateway

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    models = {
        "acme/echo": FIXTURES / "echo",
        "acme/slow": FIXTURES / "slow",
        "acme/raises": FIXTURES / "predict_raises",
        "acme/ticker": FIXTURES / "ticker",
    }
    with run_gateway(tmp_path_factory.mktemp("gw"), models) as gw:
        yield gw


@pytest.fixture
def client(gateway: Gateway) -> Iterator[Client]:
    client = Client(api_token=gateway.token, base_url=gateway.url)
    yield client
    client._client.close()


def test_run_by_model_name(client: Client) -> None:
    """replicate.run("owner/name") -> the model endpoint with Prefer: wait."""
    assert client.run("acme/echo", input={"text": "via run"}) == "via run"


def test_run_by_version(client: Client) -> None:
    """replicate.run("owner/name:version") also fetches the version's schema."""
    version = client.models.get("acme/echo").latest_version
    assert version is not None
    assert client.run(f"acme/echo:{version.id}", input={"text": "pinned"}) == "pinned"


def test_run_raises_model_error_on_failure(client: Client) -> None:
    with pytest.raises(ModelError, match="x must be non-negative"):
        client.run("acme/raises", input={"x": -5})


def test_create_and_wait(client: Client) -> None:
    """predictions.create + wait() polls GET until the prediction is terminal."""
    version = client.models.get("acme/slow").latest_version
    assert version is not None
    prediction = client.predictions.create(version=version.id, input={"seconds": 0.3})
    created_status: str = prediction.status
    assert created_status in ("starting", "processing")
    prediction.wait()
    assert prediction.status == "succeeded"
    assert prediction.output == "slept 0.3"
    assert prediction.metrics is not None
    assert prediction.metrics["predict_time"] >= 0.3


def test_cancel(client: Client) -> None:
    version = client.models.get("acme/slow").latest_version
    assert version is not None
    prediction = client.predictions.create(version=version.id, input={"seconds": 30})
    prediction.cancel()
    prediction.reload()
    assert prediction.status == "canceled"


def test_list_predictions(client: Client) -> None:
    version = client.models.get("acme/echo").latest_version
    assert version is not None
    made = client.predictions.create(version=version.id, input={"text": "listed"}, wait=True)
    page = client.predictions.list()
    assert made.id in [p.id for p in page.results]
    assert all(p.model.startswith("acme/") for p in page.results)


def test_models_and_versions(client: Client) -> None:
    model = client.models.get("acme/echo")
    assert (model.owner, model.name, model.visibility) == ("acme", "echo", "public")
    assert model.latest_version is not None
    version = model.versions.get(model.latest_version.id)
    assert version.id == model.latest_version.id
    assert version.cog_version == "0.23.1"
    assert "text" in version.openapi_schema["components"]["schemas"]["Input"]["properties"]
    versions = model.versions.list()
    assert [v.id for v in versions.results] == [version.id]


def test_stream_prints_tokens_as_the_predictor_yields_them(client: Client) -> None:
    """replicate.stream reads urls.stream: each token arrives while the model still runs."""
    arrivals: list[tuple[float, str]] = []
    for event in client.stream("acme/ticker", input={"count": 8, "every": 0.2}):
        if event.event == ServerSentEvent.EventType.OUTPUT:
            arrivals.append((time.monotonic(), str(event)))
    assert [token for _, token in arrivals] == [f"t{i}" for i in range(8)]
    spread = arrivals[-1][0] - arrivals[0][0]
    assert spread > 1.0, f"tokens arrived together ({spread:.2f}s apart), not as yielded"


def test_a_stream_reader_that_leaves_does_not_cancel(client: Client, gateway: Gateway) -> None:
    version = client.models.get("acme/ticker").latest_version
    assert version is not None
    prediction = client.predictions.create(version=version.id, input={"count": 6, "every": 0.1})
    assert prediction.urls is not None
    stream_url = prediction.urls["stream"]
    with (
        httpx.Client() as anonymous,  # a capability URL: no Authorization header
        anonymous.stream("GET", stream_url, headers={"Accept": "text/event-stream"}) as resp,
    ):
        assert resp.headers["content-type"].startswith("text/event-stream")
        first = next(resp.iter_lines())
        assert first.startswith("id: ")
    prediction.wait()
    assert prediction.status == "succeeded"
    assert prediction.output == [f"t{i}" for i in range(6)]
    replay = httpx.get(stream_url, headers={"Last-Event-ID": "0"}).text
    assert replay.count("event: output") == 6, "a late reader gets the whole stream again"
    assert replay.endswith("event: done\ndata: {}\n\n")


def test_bad_token_is_a_replicate_error(gateway: Gateway) -> None:
    bad = Client(api_token="wrong", base_url=gateway.url)
    with pytest.raises(ReplicateError) as raised:
        bad.models.get("acme/echo")
    bad._client.close()
    assert raised.value.status == 401
    assert raised.value.title == "Unauthenticated"


def test_sigint_leaves_no_cog_process(tmp_path: Path) -> None:
    """Ctrl-C on the gateway stops every Cog server and worker it started."""
    with run_gateway(tmp_path / "gw", {"acme/echo": FIXTURES / "echo"}) as gw:
        client = Client(api_token=gw.token, base_url=gw.url)
        assert client.run("acme/echo", input={"text": "x"}) == "x"
        client._client.close()
        assert len(gw.cog_pids()) == 3  # the launcher, the Cog server and its worker
    assert gw.proc.returncode is not None
    assert gw.cog_pids() == []
