"""The acceptance policy a validator applies: a pure function of the candidate's and the head's scores."""

from __future__ import annotations

from dataclasses import dataclass

from tclearn.errors import ConfigError


@dataclass(frozen=True)
class Scores:
    """A model's score on the global test set G and on the validator's own local set L (higher is better)."""

    global_: float
    local: float


@dataclass(frozen=True)
class AcceptancePolicy:
    """Approve iff the candidate is not worse than the head by more than the tolerance, on G and on L."""

    # An honest increment trained on one hospital's domain often costs the head a little on the others; a
    # poisoned one costs it a lot (bench/coalition.py: poisoned candidates score 0.0-0.3 on G against heads at
    # 0.6-0.99). A local test set is small — 8 images in the demo, where one image moves Dice by 0.125 — so its
    # tolerance is wider: 0.03 / 0.05 rejected 1.7 honest candidates in 10, 0.03 / 0.10 0.8, and no poisoned one.
    tolerance_global: float = 0.03
    tolerance_local: float = 0.10
    min_batch_size: int = 1  # the smallest batch a candidate may declare (a gradient-leakage defence)

    def __post_init__(self) -> None:
        for name in ("tolerance_global", "tolerance_local"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ConfigError(f"{name} must be between 0 and 1, got {value}")
        if self.min_batch_size < 1:
            raise ConfigError(f"min_batch_size must be at least 1, got {self.min_batch_size}")

    def verdict(self, candidate: Scores | None, head: Scores) -> tuple[bool, str]:
        """Approve or not, and why; a candidate without scores (it could not be opened) is rejected."""
        if candidate is None:
            return False, "the candidate could not be scored"
        if self.accepts(candidate, head):
            return True, "not worse than the head beyond tolerance"
        return False, "worse than the head beyond tolerance"

    def accepts(self, candidate: Scores, head: Scores) -> bool:
        return (
            candidate.global_ >= head.global_ - self.tolerance_global
            and candidate.local >= head.local - self.tolerance_local
        )
