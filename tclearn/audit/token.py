"""The auditor's bearer token: random, shown once, kept only as its sha256 (`token_sha256` in auditor.toml).

A token is 32 random bytes (URL-safe base64), so a plain sha256 is enough to keep it: nothing can be guessed from
the digest, and a stolen settings file grants nothing. The presented token is hashed and compared with the digest
in constant time (`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from tclearn.errors import AuthError


def token_digest(token: str) -> str:
    """The sha256 (hex) that settings keep instead of `token`."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh token and its digest."""
    token = secrets.token_urlsafe(32)
    return token, token_digest(token)


def check_bearer(authorization: str | None, digest: str | None) -> None:
    """Nothing when `authorization` is `Bearer <token>` with the token of `digest`; `AuthError` naming what is
    wrong otherwise (no header, another scheme, a wrong token, or no token configured at all)."""
    if digest is None:
        raise AuthError("auditor access is off: this service has no token_sha256 (`tclearn auditor token` makes one)")
    if authorization is None:
        raise AuthError("missing 'Authorization: Bearer <auditor token>' header")
    if not hmac.compare_digest(token_digest(bearer_token(authorization, "auditor token")), digest):
        raise AuthError("wrong auditor token")


def bearer_token(authorization: str, what: str) -> str:
    """The token of an `Authorization: Bearer <token>` header; `AuthError` naming the expected form (`what`:
    the token's name, e.g. "auditor token", "operator token") for another scheme or an empty token."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError(f"the Authorization header must be 'Bearer <{what}>'")
    return token.strip()
