"""The supervisor: the only holder of the CKKS secret key. It decrypts on request and logs every request.

Five operations, each checked (context, size, per-member rate) and logged against the asking account:

- `decrypt`: plain values of the given ciphertexts (e.g. a member's own predictions);
- `refresh`: the same values re-encrypted fresh (full multiplicative depth), for training; a refresh of
  model weights names their bounds and gets them projected onto those bounds (`tclearn.he.model.project`);
- `score`: from an encrypted vector of label-signed logits (margins), only the aggregate accuracy —
  the validator never sees a per-sample value;
- `measure`: of a model's weight vectors, only each one's norm and |bias| (the general's range check);
- `aggregate`: the sum of several sites' ciphertexts (at least `Limits.min_parts`), decrypted — never one
  site's part alone (the coalition's scaling round, `tclearn.he.scaling`).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tenseal as ts

from tclearn.errors import HEError, Overflow, RateLimited, SupervisorRefused, TooLargeError
from tclearn.he.context import Ciphertexts, HEContext
from tclearn.he.log import LogEntry, entries, record
from tclearn.he.model import Bound, measure, project
from tclearn.state.db import Database


@dataclass(frozen=True)
class Limits:
    max_request_bytes: int = 64 << 20
    max_values: int = 1 << 16
    requests_per_minute: int = 120
    min_parts: int = 2  # sites an aggregate must sum


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
        self._check_count(sum(v.size() for v in vectors))
        return vectors

    def _check_count(self, count: int) -> None:
        if count > self.limits.max_values:
            raise TooLargeError(
                f"{count} values requested; the supervisor decrypts at most {self.limits.max_values} per request",
                limit=self.limits.max_values,
            )

    def _decrypt(self, action: str, vectors: list[ts.CKKSVector]) -> list[np.ndarray]:
        values = []
        for k, vector in enumerate(vectors):
            try:
                values.append(self.he.decrypt(vector))
            except Overflow as exc:
                raise Overflow(f"{action} request, vector {k + 1} of {len(vectors)}: {exc}", **exc.details) from None
        return values

    def _values(self, account: str, action: str, message: Ciphertexts) -> list[np.ndarray]:
        values = self._decrypt(action, self._open(account, message))
        record(self.db, account, action, message.model, message.context, sum(len(v) for v in values))
        return values

    def decrypt(self, account: str, message: Ciphertexts) -> list[list[float]]:
        return [v.tolist() for v in self._values(account, "decrypt", message)]

    def refresh(self, account: str, message: Ciphertexts) -> Ciphertexts:
        """Fresh ciphertexts of the same values, projected onto the message's bounds if it names any."""
        values = self._values(account, "refresh", message)
        if message.bounds:
            values = [project(v, Bound(*b)) for v, b in zip(values, message.bounds, strict=True)]
        return Ciphertexts.of(self.he, [self.he.encrypt(v) for v in values], message.model)

    def measure(self, account: str, message: Ciphertexts) -> list[tuple[float, float]]:
        """(norm of the feature weights, |bias|) of each weight vector: nothing else of the weights."""
        return [measure(v) for v in self._values(account, "measure", message)]

    def aggregate(self, account: str, parts: list[Ciphertexts]) -> list[list[float]]:
        """The element-wise sum of the parts' vectors, decrypted; no part is ever decrypted alone."""
        if len(parts) < self.limits.min_parts:
            raise SupervisorRefused(
                f"an aggregate sums at least {self.limits.min_parts} sites' parts, got {len(parts)}: "
                "the supervisor never decrypts one site's statistics",
                limit=self.limits.min_parts,
            )
        self.rate.check(account)
        self.check_size(sum(p.size for p in parts))
        opened = [p.load(self.he) for p in parts]
        shapes = {tuple(v.size() for v in vectors) for vectors in opened}
        if len(shapes) != 1:
            raise SupervisorRefused(f"the parts of an aggregate differ in shape: {sorted(shapes)}")
        self._check_count(sum(next(iter(shapes))))
        try:
            sums = [sum(column[1:], column[0]) for column in zip(*opened, strict=True)]
        except (ValueError, RuntimeError) as exc:  # SEAL refuses parts at different levels or scales
            raise HEError(f"the parts of an aggregate cannot be added: {exc}") from None
        values = self._decrypt("aggregate", sums)
        record(self.db, account, "aggregate", parts[0].model, parts[0].context, sum(len(v) for v in values))
        return [v.tolist() for v in values]

    def score(self, account: str, message: Ciphertexts) -> Score:
        if len(message.vectors) != 1:
            raise SupervisorRefused(f"a score request holds one margin vector, got {len(message.vectors)}")
        (margins,) = self._values(account, "score", message)
        return Score(margin_accuracy(margins), len(margins))

    def log(self, account: str | None = None, model: str | None = None, limit: int = 1000) -> list[LogEntry]:
        return entries(self.db, account=account, model=model, limit=limit)
