"""What an audit finds: one finding per problem, about one model, weighed by its severity."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Severity(enum.StrEnum):
    """How much a finding weighs: only errors make an audit fail."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Finding:
    severity: Severity
    model_id: int
    what: str

    def __str__(self) -> str:
        return f"model {self.model_id}: {self.what}"
