"""File inputs and outputs for real: the official replicate==1.0.7 client, a `cogway serve`
subprocess and a real Cog instance that reads a PNG and writes one.

The client uploads the input with ``POST /v1/files`` and passes its URL; Cog downloads it from
the gateway, and uploads its output PNG back through ``--upload-url``; the client gets a URL that
serves exactly the bytes the predictor wrote.
"""

import hashlib
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from replicate.client import Client

from tests.conftest import FIXTURES
from tests.integration.gateway import Gateway, run_gateway

pytestmark = pytest.mark.integration

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def gradient_png(width: int, height: int) -> bytes:
    """A small RGB PNG whose pixels all differ (so a mangled byte would show)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(
        b"\x00" + b"".join(bytes((x * 7 % 256, y * 13 % 256, (x + y) % 256)) for x in range(width))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        SIGNATURE
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def decode_solid(png: bytes) -> tuple[int, int, set[bytes]]:
    """Width, height and the set of pixel values of an 8-bit RGB PNG with filter-0 rows."""
    assert png.startswith(SIGNATURE)
    width, height = struct.unpack(">II", png[16:24])
    idat, at = b"", 8
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        kind = png[at + 4 : at + 8]
        if kind == b"IDAT":
            idat += png[at + 8 : at + 8 + length]
        at += 12 + length
    raw = zlib.decompress(idat)
    stride = 1 + 3 * width
    assert len(raw) == stride * height
    rows = [raw[i * stride : (i + 1) * stride] for i in range(height)]
    assert {row[0] for row in rows} == {0}
    pixels = {row[1 + 3 * x : 4 + 3 * x] for row in rows for x in range(width)}
    return width, height, pixels


def logged(logs: str, label: str) -> str:
    found = re.search(rf"{label}.* sha256 ([0-9a-f]{{64}})", logs)
    assert found is not None, logs
    return found.group(1)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with run_gateway(tmp_path_factory.mktemp("gw"), {"acme/files": FIXTURES / "files"}) as gw:
        yield gw


@pytest.fixture
def client(gateway: Gateway) -> Iterator[Client]:
    client = Client(api_token=gateway.token, base_url=gateway.url)
    yield client
    client._client.close()


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    path = tmp_path / "gradient.png"
    path.write_bytes(gradient_png(13, 7))
    return path


def test_run_with_a_file_input_and_a_file_output(
    client: Client, gateway: Gateway, picture: Path
) -> None:
    """replicate.run uploads the PNG, the model paints one of its size, the URL serves it."""
    with picture.open("rb") as image:
        output = client.run("acme/files", input={"image": image, "color": "0080ff"})
    # Over plain http the client leaves output URLs as strings (it wraps https: and data:).
    assert isinstance(output, str)
    assert output.startswith(f"{gateway.url}/v1/files/")
    assert output.endswith("/painted.png")
    with_token = client._client.get(output)  # the client's own httpx: sends its Bearer token
    without = httpx.get(output)  # a browser / the JS client: no Authorization header
    assert with_token.status_code == without.status_code == 200
    assert with_token.content == without.content
    assert without.headers["content-type"] == "image/png"
    assert decode_solid(without.content) == (13, 7, {bytes.fromhex("0080ff")})


def test_bytes_are_identical_both_ways(client: Client, picture: Path) -> None:
    """The model read exactly the uploaded bytes and the URL serves exactly what it wrote."""
    upload = client.files.create(picture)
    sent = picture.read_bytes()
    assert upload.checksums["sha256"] == hashlib.sha256(sent).hexdigest()
    prediction = client.predictions.create(model="acme/files", input={"image": upload.urls["get"]})
    prediction.wait()
    assert prediction.status == "succeeded", prediction.error
    assert logged(prediction.logs or "", "read") == hashlib.sha256(sent).hexdigest()
    assert isinstance(prediction.output, str)
    served = httpx.get(prediction.output).content
    assert hashlib.sha256(served).hexdigest() == logged(prediction.logs or "", "wrote")
    assert decode_solid(served) == (13, 7, {bytes.fromhex("ff8800")})


def test_data_uri_inputs(client: Client, picture: Path) -> None:
    """file_encoding_strategy="base64": the input travels inline as a data: URI."""
    with picture.open("rb") as image:
        output = client.run("acme/files", input={"image": image}, file_encoding_strategy="base64")
    assert isinstance(output, str)
    assert decode_solid(httpx.get(output).content) == (13, 7, {bytes.fromhex("ff8800")})


def test_output_files_are_owned_by_the_caller(
    client: Client, gateway: Gateway, picture: Path
) -> None:
    """The output is a file of the caller's account (GET /v1/files/{id}) but not in the list."""
    with picture.open("rb") as image:
        output = client.run("acme/files", input={"image": image})
    assert isinstance(output, str)
    file_id = output.split("/v1/files/")[1].split("/")[0]
    f = client.files.get(file_id)
    assert (f.name, f.content_type) == ("painted.png", "image/png")
    assert file_id not in [listed.id for listed in client.files.list()]
    assert client.files.delete(file_id)
    assert httpx.get(output).status_code == 404
