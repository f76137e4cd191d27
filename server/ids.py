"""Identifiers: prediction ids in Replicate's 26-char base32 shape, tokens, secrets."""

import base64
import hashlib
import secrets

TOKEN_PREFIX = "cgw_"


def prediction_id() -> str:
    """A 26-char lowercase base32 id, like ``gm3qorzdhgbfurvjtvhg6dckhu``."""
    return base64.b32encode(secrets.token_bytes(16)).decode().lower().rstrip("=")


def api_token() -> str:
    """A new bearer token: high-entropy, so a plain sha256 is a safe stored form."""
    return TOKEN_PREFIX + secrets.token_urlsafe(30)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
