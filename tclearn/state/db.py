"""One declarative base and a small engine/session holder for every table tclearn keeps locally.

`Database("sqlite:///path.db")` (or any SQLAlchemy URL) creates the tables it knows on first use.
Tables are declared next to the code that owns them, on `Base`, and are created here by
`Database.create_all`, so importing a module that declares tables before connecting is enough.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import StaticPool

from tclearn.errors import ConfigError


class Base(DeclarativeBase):
    """Declarative base of every tclearn table."""


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


class Database:
    """An engine plus a session factory; tables are created on construction."""

    def __init__(self, url: str = "sqlite://") -> None:
        in_memory = url in ("sqlite://", "sqlite:///:memory:")
        if url.startswith("sqlite:///") and not in_memory:
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        try:
            if in_memory:  # one shared connection: every thread must see the same in-memory database
                self.engine: Engine = create_engine(
                    url, poolclass=StaticPool, connect_args={"check_same_thread": False}
                )
            else:
                self.engine = create_engine(url)
        except (ArgumentError, ValueError) as exc:
            raise ConfigError(f"invalid database URL {url!r}: {exc}") from None
        if self.engine.dialect.name == "sqlite" and not in_memory:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.url = url
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._create_tables()

    def _create_tables(self, attempts: int = 3) -> None:
        """Creates the missing tables. Another process opening the same database (e.g. the vault and the
        auditor reading its access log) may create one between the check and the CREATE: look again."""
        for attempt in range(attempts):
            try:
                Base.metadata.create_all(self.engine)
                return
            except OperationalError as exc:
                if "already exists" not in str(exc) or attempt == attempts - 1:
                    raise

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on any error."""
        with self._sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
