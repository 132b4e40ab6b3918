"""Brings a database's schema to the newest revision of `tclearn/state/migrations`, one process at a time.

`Database` calls `upgrade` when it opens a URL; `tclearn db upgrade` calls it ahead of a deployment. Several
processes may open one database at once (a vault and the auditor reading its access log, the services of one
site): each runs the upgrade in one transaction under a lock, and whoever comes second finds the work done.
- PostgreSQL: a transaction-scoped advisory lock (`pg_advisory_xact_lock`); its DDL is transactional.
- SQLite (a file): the upgrade runs in `BEGIN IMMEDIATE`, which holds the write lock from the first read,
  on a connection of its own (the application's engine keeps pysqlite's usual transactions).
- Other databases: no lock; upgrade them once with `tclearn db upgrade` before starting several processes.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

SCRIPT_LOCATION = "tclearn.state:migrations"
ADVISORY_LOCK = 0x7463_6C65_6172_6E00  # "tclearn\0": the key every tclearn process locks while it migrates
SQLITE_LOCK_WAIT_S = 60.0  # how long a second process waits for the first one's upgrade


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["connection"] = connection
    return config


_scripts: ScriptDirectory | None = None


def head() -> str:
    """The newest revision this tclearn ships."""
    global _scripts
    if _scripts is None:  # reading the revision files once per process is enough
        _scripts = ScriptDirectory.from_config(_config())
    found = _scripts.get_current_head()
    assert found is not None, "tclearn ships at least one revision"
    return found


def current(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated, whether empty or made by `create_all`)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> str:
    """Upgrades the database behind `engine` to `head()` unless it is there already; returns the revision."""
    if current(engine) == head():
        return head()
    locked = _sqlite_writer(engine) if _is_sqlite_file(engine) else engine
    try:
        with locked.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK})
            command.upgrade(_config(connection), "head")
    finally:
        if locked is not engine:
            locked.dispose()
    return head()


def _is_sqlite_file(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:")


def _sqlite_writer(engine: Engine) -> Engine:
    """An engine on the same SQLite file whose transactions start with BEGIN IMMEDIATE (SQLAlchemy's recipe)."""
    writer = create_engine(engine.url, poolclass=NullPool, connect_args={"timeout": SQLITE_LOCK_WAIT_S})

    @event.listens_for(writer, "connect")
    def _no_implicit_transactions(dbapi_connection: object, _record: object) -> None:
        dbapi_connection.isolation_level = None  # type: ignore[attr-defined]

    @event.listens_for(writer, "begin")
    def _begin_immediate(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return writer
