"""Signatures as the Standard Webhooks library verifies them, secrets and rotation."""

from __future__ import annotations

import base64
import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from voiceplane.callbacks import signing


def test_a_new_secret_is_whsec_and_32_random_bytes() -> None:
    first, second = signing.new_secret(), signing.new_secret()
    assert first.startswith("whsec_") and first != second
    assert len(signing.secret_key(first)) == 32


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(payload=JSON, msg_id=st.from_regex(r"msg_[A-Za-z0-9_-]{1,30}", fullmatch=True))
def test_the_library_verifies_our_signature(payload: object, msg_id: str) -> None:
    body = json.dumps(payload, ensure_ascii=False).encode()
    secret = signing.new_secret()
    now = int(time.time())
    headers = signing.headers([secret], msg_id=msg_id, timestamp=now, body=body)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    Webhook(secret).verify(body, headers)  # raises when it does not match
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body + b"x", headers)


def test_during_a_rotation_both_secrets_verify_and_the_newest_signs_first() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    body = b'{"a":1}'
    headers = signing.headers([new, old], msg_id="msg_1", timestamp=int(time.time()), body=body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert headers["webhook-signature"].split(" ")[0] == signing.signature(
        new, msg_id="msg_1", timestamp=int(headers["webhook-timestamp"]), body=body
    )
    Webhook(old).verify(body, headers)
    Webhook(new).verify(body, headers)


def test_a_known_vector() -> None:
    """The example of the Standard Webhooks specification."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert (
        signing.signature(
            secret, msg_id="msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp=1614265330, body=body
        )
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


@pytest.mark.parametrize(
    ("secret", "message"),
    [("abc", "starts with"), ("whsec_***", "base64"), ("whsec_", "empty")],
)
def test_malformed_secrets_are_refused(secret: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        signing.secret_key(secret)


def test_no_secret_and_dotted_ids_are_refused() -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    with pytest.raises(ValueError, match="at least one"):
        signing.headers([], msg_id="msg_1", timestamp=1, body=b"")
    with pytest.raises(ValueError, match="'.'"):
        signing.signature(secret, msg_id="msg.1", timestamp=1, body=b"")
