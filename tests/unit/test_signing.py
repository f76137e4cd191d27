"""Webhook signatures verify with the official Python client's validator."""

import base64
import hashlib
import hmac
import json
import time

import pytest
from replicate.webhook import InvalidSignatureError, Webhooks, WebhookSigningSecret

from server.webhooks import signing


def test_signature_validates_with_replicate_client() -> None:
    secret = signing.new_secret()
    body = json.dumps({"id": "abc", "status": "succeeded"}).encode()
    headers = signing.headers(secret, msg_id="msg_1", timestamp=int(time.time()), body=body)
    Webhooks.validate(
        headers=headers,
        body=body.decode(),
        secret=WebhookSigningSecret(key=secret),
        tolerance=60,
    )


def test_a_tampered_body_fails_validation() -> None:
    secret = signing.new_secret()
    headers = signing.headers(secret, msg_id="msg_1", timestamp=int(time.time()), body=b"{}")
    with pytest.raises(InvalidSignatureError):
        Webhooks.validate(headers=headers, body='{"x": 1}', secret=WebhookSigningSecret(key=secret))


def test_secret_shape() -> None:
    """whsec_ + standard base64 of 24 bytes, one underscore (both clients split on it)."""
    secret = signing.new_secret()
    assert secret.startswith("whsec_")
    assert secret.count("_") == 1
    assert len(secret) == len("whsec_") + 32
    assert signing.new_secret() != secret


def test_known_vector() -> None:
    """A fixed key and message give a fixed signature (HMAC-SHA256 over id.timestamp.body)."""
    secret = "whsec_" + "A" * 32  # 24 zero bytes
    expected = base64.b64encode(hmac.new(bytes(24), b"m.1.b", hashlib.sha256).digest()).decode()
    assert signing.sign(secret, msg_id="m", timestamp=1, body=b"b") == "v1," + expected
