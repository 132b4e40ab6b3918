"""The supervisor: the only holder of the CKKS secret key. It decrypts on request and logs every request.

Three operations, each checked (context, size, per-member rate) and logged against the asking account:

- `decrypt`: plain values of the given ciphertexts (e.g. a member's own predictions);
- `refresh`: the same values re-encrypted fresh (full multiplicative depth), for training;
- `score`: from an encrypted vector of label-signed logits (margins), only the aggregate accuracy —
  the validator never sees a per-sample value.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tenseal as ts

from tclearn.errors import RateLimited, SupervisorRefused, TooLargeError
from tclearn.he.context import Ciphertexts, HEContext
from tclearn.he.log import LogEntry, entries, record
from tclearn.state.db import Database


@dataclass(frozen=True)
class Limits:
    max_request_bytes: int = 64 << 20
    max_values: int = 1 << 16
    requests_per_minute: int = 120


@dataclass(frozen=True)
class Score:
    accuracy: float
    count: int


class RateLimiter:
    """At most `per_minute` requests per account in any 60-second window."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute, self.clock = per_minute, clock
        self._seen: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def check(self, account: str) -> None:
        with self._lock:
            now, seen = self.clock(), self._seen[account]
            while seen and seen[0] <= now - 60.0:
                seen.popleft()
            if len(seen) >= self.per_minute:
                raise RateLimited(
                    f"{account} made {len(seen)} supervisor requests in the last minute (limit {self.per_minute})",
                    limit=self.per_minute,
                )
            seen.append(now)


def margin_accuracy(margins: np.ndarray) -> float:
    """Accuracy from label-signed logits: a sample is right when its margin is positive."""
    return float(np.mean(margins > 0))


class Supervisor:
    def __init__(self, he: HEContext, db: Database, limits: Limits = Limits()) -> None:
        if not he.can_decrypt:
            raise SupervisorRefused("the supervisor needs the secret context, not the public one")
        self.he, self.db, self.limits = he, db, limits
        self.rate = RateLimiter(limits.requests_per_minute)

    @property
    def context_hash(self) -> str:
        return self.he.hash

    def check_size(self, size: int) -> None:
        if size > self.limits.max_request_bytes:
            raise TooLargeError(
                f"request of {size} bytes exceeds the supervisor limit of {self.limits.max_request_bytes} bytes",
                limit=self.limits.max_request_bytes,
            )

    def _open(self, account: str, message: Ciphertexts) -> list[ts.CKKSVector]:
        self.rate.check(account)
        self.check_size(message.size)
        if not message.vectors:
            raise SupervisorRefused("no ciphertexts in the request")
        vectors = message.load(self.he)
        count = sum(v.size() for v in vectors)
        if count > self.limits.max_values:
            raise TooLargeError(
                f"{count} values requested; the supervisor decrypts at most {self.limits.max_values} per request",
                limit=self.limits.max_values,
            )
        return vectors

    def _values(self, account: str, action: str, message: Ciphertexts) -> list[np.ndarray]:
        values = [self.he.decrypt(v) for v in self._open(account, message)]
        record(self.db, account, action, message.model, message.context, sum(len(v) for v in values))
        return values

    def decrypt(self, account: str, message: Ciphertexts) -> list[list[float]]:
        return [v.tolist() for v in self._values(account, "decrypt", message)]

    def refresh(self, account: str, message: Ciphertexts) -> Ciphertexts:
        fresh = [self.he.encrypt(v) for v in self._values(account, "refresh", message)]
        return Ciphertexts.of(self.he, fresh, message.model)

    def score(self, account: str, message: Ciphertexts) -> Score:
        if len(message.vectors) != 1:
            raise SupervisorRefused(f"a score request holds one margin vector, got {len(message.vectors)}")
        (margins,) = self._values(account, "score", message)
        return Score(margin_accuracy(margins), len(margins))

    def log(self, account: str | None = None, model: str | None = None, limit: int = 1000) -> list[LogEntry]:
        return entries(self.db, account=account, model=model, limit=limit)
