"""One declarative base and a small engine/session holder for every table tclearn keeps locally.

`Database("sqlite:///path.db")` (or any SQLAlchemy URL: `postgresql+psycopg://user@host/db` with the
`postgres` extra) brings the schema to the newest migration when it opens (`tclearn.state.migrate`).
Tables are declared next to the code that owns them, on `Base`; each one is created by a revision in
`tclearn/state/migrations/versions`, and a test fails while the models and the migrated schema differ.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from alembic.util import CommandError
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import StaticPool

from tclearn.errors import ConfigError
from tclearn.state.migrate import upgrade as upgrade_to_head

T = TypeVar("T")


class Base(DeclarativeBase):
    """Declarative base of every tclearn table."""


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def open_engine(url: str) -> Engine:
    """An engine for `url` (a bad URL or a missing driver is a `ConfigError`); SQLite gets WAL and a busy
    timeout, and an in-memory SQLite database one connection shared by every thread."""
    in_memory = url in ("sqlite://", "sqlite:///:memory:")
    if url.startswith("sqlite:///") and not in_memory:
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        if in_memory:  # one shared connection: every thread must see the same in-memory database
            engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
        else:
            engine = create_engine(url)
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(f"invalid database URL {url!r}: {exc}") from None
    except ImportError as exc:
        raise ConfigError(
            f"no driver for database URL {url!r} ({exc.name or exc}); for PostgreSQL install tclearn[postgres]"
        ) from None
    if engine.dialect.name == "sqlite" and not in_memory:
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def reachable(engine: Engine, action: Callable[[Engine], T]) -> T:
    """`action(engine)`, with a database that cannot be reached or changed, or is at a revision this tclearn
    does not know, named in a `ConfigError`."""
    where = engine.url.render_as_string(hide_password=True)
    try:
        return action(engine)
    except DBAPIError as exc:  # unreachable, refused, or not allowed to create the tables
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        doing = "open" if isinstance(exc, OperationalError) else "migrate"
        raise ConfigError(f"cannot {doing} database {where}: {reason}") from None
    except CommandError as exc:
        raise ConfigError(f"database {where} cannot be migrated by this tclearn: {exc}") from None


def upgrade(engine: Engine) -> str:
    """Migrates the database behind `engine` to the newest revision (`migrate.upgrade`); returns the revision."""
    return reachable(engine, upgrade_to_head)


class Database:
    """An engine plus a session factory; the schema is migrated to the newest revision on construction."""

    def __init__(self, url: str = "sqlite://", *, migrate: bool = True) -> None:
        """`migrate=False` for a database another service owns (the auditor reading the vault's access log):
        its schema is read as it is, never migrated, whichever tclearn is newer."""
        self.engine: Engine = open_engine(url)
        self.url = url
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        try:
            if migrate:
                upgrade(self.engine)
        except BaseException:
            self.engine.dispose()
            raise

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on any error."""
        with self._sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
