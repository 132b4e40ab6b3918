"""Who calls the member API: the hospital's own staff (the operator token) or a coalition peer (a signed request).

* Operator: `Authorization: Bearer <token>`, the token being the value of the environment variable that
  `operator_token_env` in member.toml names (at least 16 characters). Without it, operator calls get 401.
* Peer: the vault's signed-request scheme (`tclearn.vault.signing`): EIP-712 signature over this service's
  audience (its public URL, the coalition's chain id and contract), method, path with query, body sha256,
  timestamp and nonce; another audience, stale timestamps and replayed nonces are 401, an address that is not
  an active member of the coalition on chain is 403.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader, HTTPBearer

from services.common import signed_caller
from tclearn.audit.token import bearer_token
from tclearn.errors import AuthError, ConfigError
from tclearn.site.jobs import OPERATOR
from tclearn.vault.signing import ADDRESS_HEADER, RequestVerifier

MIN_TOKEN_LENGTH = 16
# Declared for the OpenAPI document only (security schemes); `Authenticator` reads the headers itself.
OPERATOR_SCHEME = HTTPBearer(auto_error=False, description="the operator token (hospital staff)")
PEER_SCHEME = APIKeyHeader(
    name=ADDRESS_HEADER,
    auto_error=False,
    description="a coalition peer's signed request: x-tclearn-address, -signature, -timestamp, -nonce, -audience",
)


@dataclass(frozen=True)
class Caller:
    identity: str  # "operator" or the peer's checksum address

    @property
    def operator(self) -> bool:
        return self.identity == OPERATOR


class Authenticator:
    def __init__(self, verifier: RequestVerifier, operator_token: str | None, token_env: str) -> None:
        if operator_token is not None and len(operator_token) < MIN_TOKEN_LENGTH:
            raise ConfigError(f"the operator token in {token_env} is shorter than {MIN_TOKEN_LENGTH} characters")
        self.verifier, self.token, self.token_env = verifier, operator_token, token_env

    def operator(self, header: str) -> Caller:
        token = bearer_token(header, "operator token")
        if self.token is None:
            raise AuthError(f"operator access is off: this service was started without {self.token_env}")
        if not hmac.compare_digest(token.encode(), self.token.encode()):
            raise AuthError("wrong operator token")
        return Caller(OPERATOR)

    async def __call__(self, request: Request) -> Caller:
        header = request.headers.get("authorization")
        if header is not None:
            return self.operator(header)
        body_sha256 = hashlib.sha256(await request.body()).hexdigest()
        return Caller(await run_in_threadpool(signed_caller, self.verifier, request, body_sha256))


async def authenticated(
    request: Request,
    _bearer: Annotated[Any, Security(OPERATOR_SCHEME)] = None,
    _peer: Annotated[Any, Security(PEER_SCHEME)] = None,
) -> Caller:
    """The caller of a request (the security schemes are declared for the OpenAPI document)."""
    authenticator: Authenticator = request.app.state.authenticator
    return await authenticator(request)


Authenticated = Annotated[Caller, Depends(authenticated)]
