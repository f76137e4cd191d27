"""Standard Webhooks signatures, as Replicate sends them and its clients verify them.

The signed content is ``"{webhook-id}.{webhook-timestamp}.{body}"``; the signature is
HMAC-SHA256 keyed with the base64-decoded part of the ``whsec_…`` secret, sent as
``webhook-signature: v1,<standard base64 with padding>``. ``webhook-id`` stays the same across
retries of one message.
"""

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24  # 32 base64 characters, like Replicate's


def new_secret() -> str:
    """``whsec_`` + standard base64 (one underscore only: both clients split on it)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def sign(secret: str, *, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, *, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three signature headers of one delivery attempt."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id=msg_id, timestamp=timestamp, body=body),
    }
