"""How requests are signed: `Sign` = md5(apiKey + apiSecret + Timestamp), lowercase hex.

The secret is read here and nowhere else, and the headers built here are handed
straight to the HTTP client: nothing else in flowsync holds a `Sign` value. The
simulator checks requests with the same `sign`, so the two can never disagree.
"""

from __future__ import annotations

import hashlib

from pydantic import SecretStr


def sign(api_key: str, api_secret: SecretStr, timestamp: int | str) -> str:
    """The vendor's signature at `timestamp` (Unix seconds, or the text of a `Timestamp` header)."""
    text = f"{api_key}{api_secret.get_secret_value()}{timestamp}"
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def signed_headers(api_key: str, api_secret: SecretStr, timestamp: int) -> dict[str, str]:
    """Every header the API requires on every endpoint."""
    return {
        "Content-Type": "application/json;charset=UTF-8",
        "Api-Key": api_key,
        "Timestamp": str(timestamp),
        "Sign": sign(api_key, api_secret, timestamp),
    }
