"""Identifiers: prediction and file ids in Replicate's 26-char base32 shape, tokens, secrets."""

import base64
import hashlib
import secrets
import string

TOKEN_PREFIX = "cgw_"
_ALPHANUMERIC = string.ascii_letters + string.digits


def prediction_id() -> str:
    """A 26-char lowercase base32 id, like ``gm3qorzdhgbfurvjtvhg6dckhu``."""
    return base64.b32encode(secrets.token_bytes(16)).decode().lower().rstrip("=")


def file_id() -> str:
    """An opaque file id (the same shape as prediction ids)."""
    return prediction_id()


def api_token() -> str:
    """A new bearer token: high-entropy, so a plain sha256 is a safe stored form."""
    return TOKEN_PREFIX + secrets.token_urlsafe(30)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def webhook_message_id() -> str:
    """A ``webhook-id`` like Replicate's: ``msg_`` + 24 letters and digits."""
    return "msg_" + "".join(secrets.choice(_ALPHANUMERIC) for _ in range(24))
