"""Request signing (`sync.vendor.signing`): the vendor's `Sign` and the headers every request carries."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from sync.vendor.signing import sign, signed_headers

# Expected values computed once, outside flowsync, as md5(key + secret + timestamp) in lowercase hex.
VECTORS = [
    pytest.param(
        "demo-key", "demo-secret", 1_700_000_000, "6eb1eb1912a2ba5c61d7bce736cbfa72", id="simulator"
    ),
    pytest.param("key-4711", "s3cr3t-Ω-never-sent", 0, "7e4cd4f538a0fa04dab389ab36cbd919", id="UTF-8 secret"),
    pytest.param("", "", 1, "c4ca4238a0b923820dcc509a6f75849b", id="md5 of '1'"),
]


@pytest.mark.parametrize(("key", "secret", "timestamp", "expected"), VECTORS)
def test_sign_is_md5_of_key_secret_timestamp(key: str, secret: str, timestamp: int, expected: str) -> None:
    """`Sign` is the lowercase hex MD5 of the plain concatenation, the text encoded as UTF-8."""
    assert sign(key, SecretStr(secret), timestamp) == expected


@pytest.mark.parametrize(("key", "secret", "timestamp", "expected"), VECTORS)
def test_signed_headers_are_exactly_the_documented_four(
    key: str, secret: str, timestamp: int, expected: str
) -> None:
    """Content-Type, Api-Key, Timestamp in decimal seconds and Sign; the secret is in none of them."""
    headers = signed_headers(key, SecretStr(secret), timestamp)
    assert headers == {
        "Content-Type": "application/json;charset=UTF-8",
        "Api-Key": key,
        "Timestamp": str(timestamp),
        "Sign": expected,
    }
    if secret:
        assert not [value for value in headers.values() if secret in value]


def test_sign_changes_with_every_input() -> None:
    """A different key, secret or second gives a different Sign, so none can be replayed for another."""
    base = sign("key", SecretStr("secret"), 100)
    assert base != sign("key2", SecretStr("secret"), 100)
    assert base != sign("key", SecretStr("secret2"), 100)
    assert base != sign("key", SecretStr("secret"), 101)
