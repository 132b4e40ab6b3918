"""The vault's access log: who read or wrote which blob, how many bytes, when (for auditors)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import BigInteger, Float, String, select
from sqlalchemy.orm import Mapped, mapped_column

from tclearn.state.db import Base, Database


class AccessRecord(Base):
    __tablename__ = "vault_access_log"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float, index=True)
    account: Mapped[str] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)


@dataclass(frozen=True)
class AccessEntry:
    at: float
    account: str
    action: str
    sha256: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def record_access(db: Database, account: str, action: str, sha256: str, size: int) -> None:
    with db.session() as session:
        session.add(AccessRecord(at=time.time(), account=account, action=action, sha256=sha256, size=size))


def access_entries(
    db: Database, *, account: str | None = None, sha256: str | None = None, limit: int = 1000
) -> list[AccessEntry]:
    """Most recent first, optionally for one account or one blob."""
    query = select(AccessRecord).order_by(AccessRecord.id.desc()).limit(limit)
    if account is not None:
        query = query.where(AccessRecord.account == account)
    if sha256 is not None:
        query = query.where(AccessRecord.sha256 == sha256)
    with db.session() as session:
        return [AccessEntry(r.at, r.account, r.action, r.sha256, r.size) for r in session.scalars(query)]
