"""Signed vault requests: the client signs (method, path, body sha256, timestamp, nonce) with its
Ethereum key (EIP-191 personal message); the server recovers the address, refuses stale timestamps and
replayed nonces, and asks the member directory whether the address is an active member.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Mapping

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from tclearn.errors import AccessDenied, AuthError
from tclearn.vault.directory import MemberDirectory, checksum

ADDRESS_HEADER = "x-tclearn-address"
SIGNATURE_HEADER = "x-tclearn-signature"
TIMESTAMP_HEADER = "x-tclearn-timestamp"
NONCE_HEADER = "x-tclearn-nonce"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_SKEW_S = 300
_DOMAIN = "tclearn-vault-request-v1"


def canonical_request(method: str, path: str, body_sha256: str, timestamp: int, nonce: str) -> str:
    """The exact text both sides sign and verify; `path` includes any query string."""
    return "\n".join([_DOMAIN, method.upper(), path, body_sha256, str(timestamp), nonce])


def sign_request(
    signer: LocalAccount | str | bytes,
    method: str,
    path: str,
    body_sha256: str = EMPTY_SHA256,
    now: float | None = None,
) -> dict[str, str]:
    """Headers that authenticate one request as `signer` (an account or its private key)."""
    account = signer if isinstance(signer, LocalAccount) else Account.from_key(signer)
    timestamp = int(time.time() if now is None else now)
    nonce = secrets.token_hex(16)
    message = encode_defunct(text=canonical_request(method, path, body_sha256, timestamp, nonce))
    signature = account.sign_message(message).signature.hex()
    return {
        ADDRESS_HEADER: account.address,
        SIGNATURE_HEADER: signature if signature.startswith("0x") else "0x" + signature,
        TIMESTAMP_HEADER: str(timestamp),
        NONCE_HEADER: nonce,
    }


class RequestVerifier:
    """Checks signed request headers; keeps the nonces it saw until they would be stale anyway."""

    def __init__(
        self, directory: MemberDirectory, max_skew_s: int = MAX_SKEW_S, clock: Callable[[], float] = time.time
    ) -> None:
        self.directory = directory
        self.max_skew_s = max_skew_s
        self.clock = clock
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def verify(self, method: str, path: str, headers: Mapping[str, str], body_sha256: str) -> str:
        """The checksum address that signed this request; `AuthError` (401) or `AccessDenied` (403)."""
        values = {
            name: headers.get(name) for name in (ADDRESS_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, NONCE_HEADER)
        }
        missing = [name for name, value in values.items() if not value]
        if missing:
            raise AuthError(f"unsigned request: missing header(s) {', '.join(missing)}")
        claimed, signature = str(values[ADDRESS_HEADER]), str(values[SIGNATURE_HEADER])
        nonce = str(values[NONCE_HEADER])
        try:
            timestamp = int(str(values[TIMESTAMP_HEADER]))
        except ValueError:
            raise AuthError(f"invalid timestamp {values[TIMESTAMP_HEADER]!r}") from None
        now = self.clock()
        if abs(now - timestamp) > self.max_skew_s:
            raise AuthError(
                f"stale request: timestamp {timestamp} is {int(now - timestamp)} s from the server clock "
                f"(limit {self.max_skew_s} s)"
            )
        message = encode_defunct(text=canonical_request(method, path, body_sha256, timestamp, nonce))
        try:
            recovered = checksum(Account.recover_message(message, signature=signature))
        except Exception:  # eth-account raises several types for malformed signatures
            raise AuthError(f"malformed signature {signature[:20]!r}...") from None
        if not _is_address(claimed) or recovered != checksum(claimed):
            raise AuthError(f"signature does not match address {claimed} for {method} {path}")
        self._remember(recovered, nonce, timestamp)
        if not self.directory.is_active_member(recovered):
            raise AccessDenied(f"{recovered} is not an active member of the coalition", address=recovered)
        return recovered

    def _remember(self, address: str, nonce: str, timestamp: int) -> None:
        with self._lock:
            now = self.clock()
            for key in [k for k, expiry in self._seen.items() if expiry < now]:
                del self._seen[key]
            if (address, nonce) in self._seen:
                raise AuthError(f"replayed request: nonce {nonce} was already used by {address}")
            self._seen[(address, nonce)] = timestamp + self.max_skew_s + 1


def _is_address(text: str) -> bool:
    try:
        checksum(text)
    except Exception:
        return False
    return True
