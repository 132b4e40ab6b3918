"""The migrations: they build exactly the tables the models declare, adopt a database made by the old
`create_all`, let several processes open a new database at once, and refuse a revision they do not know."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from tclearn.errors import ConfigError
from tclearn.state import migrate
from tclearn.state.db import Base, Database
from tests.state.postgres import LocalPostgres

ROOT = Path(__file__).resolve().parents[2]
# Every module that declares a table; `test_every_table_module_is_listed` keeps this list whole.
TABLE_MODULES = (
    "tclearn.audit.follow",
    "tclearn.he.log",
    "tclearn.ledger.events",
    "tclearn.site.jobs",
    "tclearn.site.node",
    "tclearn.vault.access_log",
    "tclearn.vault.replay_db",
)


def _declares_a_table(path: Path) -> bool:
    tree = ast.parse(path.read_text())
    return any(
        isinstance(node, ast.ClassDef) and any(isinstance(b, ast.Name) and b.id == "Base" for b in node.bases)
        for node in ast.walk(tree)
    )


def test_every_table_module_is_listed() -> None:
    found = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for folder in ("tclearn", "services")
        for path in (ROOT / folder).rglob("*.py")
        if _declares_a_table(path) and path.name != "db.py"
    }
    assert found == set(TABLE_MODULES)


def test_migrated_schema_is_exactly_the_models(database_url: str) -> None:
    """A table, column, type, index or nullability declared without a revision (or the reverse) fails here."""
    for module in TABLE_MODULES:
        __import__(module)
    db = Database(database_url)
    with db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata)
    assert diff == [], f"write a revision in tclearn/state/migrations/versions for: {diff}"
    assert migrate.current(db.engine) == migrate.head()


def test_a_database_made_by_create_all_is_adopted(database_url: str) -> None:
    """The old `create_all` made only the tables its process had imported, and no alembic_version."""
    from tclearn.vault.access_log import AccessRecord, access_entries, record_access

    engine = create_engine(database_url)
    AccessRecord.__table__.create(engine)  # type: ignore[attr-defined]
    with engine.begin() as connection:
        connection.execute(
            AccessRecord.__table__.insert().values(at=1.0, account="0xA", action="get", sha256="ab" * 32, size=3)  # type: ignore[attr-defined]
        )
    engine.dispose()
    db = Database(database_url)
    assert migrate.current(db.engine) == migrate.head()
    assert [e.size for e in access_entries(db)] == [3]  # the old rows stay
    record_access(db, "0xB", "put", "cd" * 32, 4)
    assert {"alembic_version", "vault_access_log", "node_votes", "member_train_jobs"} <= set(
        inspect(db.engine).get_table_names()
    )


def test_jobs_made_before_job_kinds_are_training_jobs(database_url: str) -> None:
    """Revision 0002 adds the jobs' kind and result: a row written at 0001 reads as a training job."""
    from alembic import command

    from tclearn.site.jobs import JobKind, TrainJobRow

    engine = create_engine(database_url)
    with engine.begin() as connection:
        command.upgrade(migrate._config(connection), "0001")
        connection.execute(
            text(
                "INSERT INTO member_train_jobs (id, owner, state, phase, progress, created_at, timings) "
                "VALUES ('old', 'operator', 'done', 'submitting', 1.0, 1.0, '{}')"
            )
        )
    engine.dispose()
    db = Database(database_url)
    with db.session() as s:
        row = s.get(TrainJobRow, "old")
        assert row is not None and row.kind == JobKind.TRAIN.value and row.result is None


def test_votes_made_before_signed_votes_are_direct_votes(database_url: str) -> None:
    """Revision 0003 lets a vote have no transaction and a signature hash: a row written at 0002 keeps its tx."""
    from alembic import command

    from tclearn.site.node import CastVote

    engine = create_engine(database_url)
    with engine.begin() as connection:
        command.upgrade(migrate._config(connection), "0002")
        connection.execute(
            text(
                "INSERT INTO node_votes (node, model_id, approve, tx_hash, at) "
                f"VALUES ('0xA', 1, true, '0x{'ab' * 32}', '2026-01-01 00:00:00')"
            )
        )
    engine.dispose()
    db = Database(database_url)
    with db.session() as s:
        s.add(CastVote(node="0xA", model_id=2, approve=False, signature_hash="0x" + "cd" * 32, at=datetime.now(UTC)))
    with db.session() as s:
        old, signed = s.get(CastVote, ("0xA", 1)), s.get(CastVote, ("0xA", 2))
        assert old is not None and old.tx_hash == "0x" + "ab" * 32 and old.signature_hash is None
        assert signed is not None and signed.tx_hash is None and signed.signature_hash == "0x" + "cd" * 32


def test_processes_opening_a_new_database_at_once_all_start(database_url: str) -> None:
    opener = "import sys; from tclearn.state.db import Database; Database(sys.argv[1])"
    processes = [
        subprocess.Popen([sys.executable, "-c", opener, database_url], cwd=ROOT, stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    failures = [p.stderr.read().decode() for p in processes if p.wait(120) != 0 and p.stderr]  # type: ignore[union-attr]
    assert failures == []
    db = Database(database_url)
    with db.engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [migrate.head()]


def test_a_revision_this_tclearn_does_not_know_is_refused(database_url: str) -> None:
    db = Database(database_url)
    with db.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
    db.dispose()
    with pytest.raises(ConfigError, match="f00d"):
        Database(database_url)


@pytest.mark.postgres
def test_an_unreachable_server_is_named(postgres: LocalPostgres) -> None:
    url = postgres.url("no_such_database")
    with pytest.raises(ConfigError, match=r"cannot open database .*no_such_database"):
        Database(url)


def test_a_missing_driver_is_named() -> None:
    # pg8000 is a PostgreSQL driver SQLAlchemy knows and tclearn does not install
    if importlib.util.find_spec("pg8000") is not None:
        pytest.skip("pg8000 is installed here")
    with pytest.raises(ConfigError, match=r"no driver .*pg8000.*tclearn\[postgres\]"):
        Database("postgresql+pg8000://u@127.0.0.1/db")
