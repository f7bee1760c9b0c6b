"""Standard Webhooks signatures (https://www.standardwebhooks.com).

Every callback carries three headers:

- ``webhook-id``: the outbox row's id, the same on every attempt (receivers drop duplicates);
- ``webhook-timestamp``: when this attempt was signed, integer seconds since the epoch;
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``, one per secret,
  separated by spaces.

Secrets are written ``whsec_<base64 of the key bytes>``. An account signs with its newest
secret; while a rotation's grace period runs, the retired secret signs too (a second
``v1,`` entry), so a receiver still holding the old secret keeps verifying (see
``voiceplane.store.outbox.signing_secrets``). A GET callback (legacy) is signed over an
empty body.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from typing import Final

SECRET_PREFIX: Final = "whsec_"
SECRET_BYTES: Final = 32
SIGNATURE_VERSION: Final = "v1"


def new_secret() -> str:
    """A fresh random secret, ``whsec_...``."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The key bytes of a ``whsec_`` secret; a malformed secret is a :class:`ValueError`."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a signing secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error as error:
        raise ValueError(f"a signing secret is {SECRET_PREFIX}<base64>: {error}") from None
    if not key:
        raise ValueError("a signing secret must not be empty")
    return key


def signature(secret: str, *, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64>``: the signature of one message with one secret."""
    if "." in msg_id:
        raise ValueError("a webhook id must not contain '.' (it separates the signed parts)")
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def headers(
    secrets_newest_first: Sequence[str], *, msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers, signed with every secret given."""
    if not secrets_newest_first:
        raise ValueError("at least one signing secret is needed")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            signature(secret, msg_id=msg_id, timestamp=timestamp, body=body)
            for secret in secrets_newest_first
        ),
    }
