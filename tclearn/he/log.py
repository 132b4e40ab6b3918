"""The supervisor's decryption log: who asked for what (decrypt, refresh, score), on which model, when."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Float, Integer, String, select
from sqlalchemy.orm import Mapped, mapped_column

from tclearn.state.db import Base, Database


class DecryptionRecord(Base):
    __tablename__ = "he_supervisor_log"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float, index=True)
    account: Mapped[str] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(64), index=True)
    context: Mapped[str] = mapped_column(String(64))
    values: Mapped[int] = mapped_column(Integer)


@dataclass(frozen=True)
class LogEntry:
    at: float
    account: str
    action: str
    model: str
    context: str
    values: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def record(db: Database, account: str, action: str, model: str, context: str, values: int) -> None:
    with db.session() as session:
        session.add(
            DecryptionRecord(
                at=time.time(), account=account, action=action, model=model, context=context, values=values
            )
        )


def entries(db: Database, *, account: str | None = None, model: str | None = None, limit: int = 1000) -> list[LogEntry]:
    """Most recent first, optionally for one account or one model."""
    query = select(DecryptionRecord).order_by(DecryptionRecord.id.desc()).limit(limit)
    if account is not None:
        query = query.where(DecryptionRecord.account == account)
    if model is not None:
        query = query.where(DecryptionRecord.model == model)
    with db.session() as session:
        return [LogEntry(r.at, r.account, r.action, r.model, r.context, r.values) for r in session.scalars(query)]
