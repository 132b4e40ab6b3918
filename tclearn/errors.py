"""The one exception tree of tclearn.

Every error a user can cause is a `TclearnError` with a stable `code`; services map codes to HTTP
statuses in one place and the CLI prints `str(error)` as one line with a non-zero exit. Messages name
the bad value and, where there is one, the way out.
"""

from __future__ import annotations

from typing import Any, ClassVar


class TclearnError(Exception):
    """Root of every error tclearn raises on purpose."""

    code: ClassVar[str] = "tclearn_error"
    http_status: ClassVar[int] = 400

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}


class ConfigError(TclearnError):
    """A configuration file or option is missing, malformed or inconsistent."""

    code = "config_error"


class NotFoundError(TclearnError):
    """A file, model, member or blob that was named does not exist."""

    code = "not_found"
    http_status = 404


class AuthError(TclearnError):
    """The caller could not be authenticated (bad password, signature, key)."""

    code = "auth_error"
    http_status = 401


class IntegrityError(TclearnError):
    """Stored bytes do not match the hash that vouches for them."""

    code = "integrity_error"
    http_status = 400


# --- ledger -----------------------------------------------------------------------------------------


class LedgerError(TclearnError):
    """Something went wrong talking to the chain or the Coalition contract."""

    code = "ledger_error"
    http_status = 502


class ChainUnreachable(LedgerError):
    """The JSON-RPC endpoint does not answer."""

    code = "chain_unreachable"


class WrongChain(LedgerError):
    """The endpoint serves another chain than the deployment was made on."""

    code = "wrong_chain"
    http_status = 409


class NoContract(LedgerError):
    """No Coalition contract (or another contract) lives at the given address."""

    code = "no_contract"
    http_status = 404


class TransactionTimeout(LedgerError):
    """A transaction was sent but no receipt arrived in time."""

    code = "transaction_timeout"
    http_status = 504


class NonceConflict(LedgerError):
    """The node refused a transaction's nonce every time it was sent: another process sends as the same account
    without sharing its nonce lock. `causes` lists each refusal."""

    code = "nonce_conflict"
    http_status = 503


class ContractRevert(LedgerError):
    """The contract refused a call; `error` is the contract's custom error name."""

    code = "contract_revert"
    http_status = 409

    def __init__(self, message: str, *, error: str, args: dict[str, Any] | None = None) -> None:
        super().__init__(message, error=error, args=args or {})
        self.error = error
        self.error_args = args or {}


class NodeError(LedgerError):
    """A local chain node (anvil, ganache) could not be started or stopped."""

    code = "node_error"
    http_status = 500


# --- vault ------------------------------------------------------------------------------------------


class PrivacyBudgetExceeded(TclearnError):
    """A member's increment would spend more epsilon than is left of its privacy budget on chain."""

    code = "privacy_budget_exceeded"
    http_status = 409


class ConflictError(TclearnError):
    """The vault already holds different content under the same name."""

    code = "conflict"
    http_status = 409


class TooLargeError(TclearnError):
    """A blob exceeds the vault's configured size limit."""

    code = "too_large"
    http_status = 413


class AccessDenied(TclearnError):
    """The caller is authenticated but not allowed (not an active member, not a recipient)."""

    code = "access_denied"
    http_status = 403


class StorageError(TclearnError):
    """The vault's backing storage (a disk, an object store such as S3) refused or failed an operation."""

    code = "storage_error"
    http_status = 502


class VaultUnavailable(TclearnError):
    """The vault service cannot be reached or the connection broke off."""

    code = "vault_unavailable"
    http_status = 502


# --- learning ---------------------------------------------------------------------------------------


class DataError(TclearnError):
    """A data folder or file cannot be used: empty, missing masks, unreadable, mismatched shapes."""

    code = "data_error"


class TrainingCancelled(TclearnError):
    """A training run stopped because its cancellation token was set."""

    code = "training_cancelled"
    http_status = 409


class AggregationError(TclearnError):
    """State dicts that cannot be combined: no inputs, different keys or shapes, bad weights."""

    code = "aggregation_error"


# --- homomorphic encryption (variant C) ---------------------------------------------------------


class HEError(TclearnError):
    """A CKKS (TenSEAL) operation, encrypted model or supervisor request that cannot go ahead."""

    code = "he_error"


class ContextMismatch(HEError):
    """A ciphertext or encrypted model was made under another CKKS context than the one in use."""

    code = "context_mismatch"
    http_status = 409


class DepthExhausted(HEError):
    """A ciphertext has too few multiplicative levels left for the next operation: refresh it first."""

    code = "depth_exhausted"
    http_status = 409


class Overflow(HEError):
    """An encrypted computation left the range CKKS parameters can hold (decrypted values beyond 2^16): a
    step too large or features not scaled, never another context (that is `ContextMismatch`)."""

    code = "overflow"
    http_status = 422


class SecretKeyMissing(HEError):
    """Decryption was attempted with a public context: only the supervisor holds the secret key."""

    code = "secret_key_missing"
    http_status = 403


class SupervisorRefused(HEError):
    """The supervisor refused a request (too many values, unknown model, bad ciphertext)."""

    code = "supervisor_refused"
    http_status = 400


class RateLimited(SupervisorRefused):
    """A member sent more supervisor requests than its per-minute allowance."""

    code = "rate_limited"
    http_status = 429
