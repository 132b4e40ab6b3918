"""The local state database: one in-memory database across threads, clear errors for bad URLs, `tclearn db`."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect
from typer.testing import CliRunner

from tclearn.cli.app import app
from tclearn.errors import ConfigError
from tclearn.ledger.events import EventCursor
from tclearn.state import migrate
from tclearn.state.db import Database


def test_in_memory_database_is_shared_across_threads() -> None:
    db = Database("sqlite://")
    with db.session() as s:
        s.add(EventCursor(name="c", chain_id=1, contract="0x" + "00" * 20, block=7, log_index=0))
    seen: list[int] = []

    def read() -> None:
        with db.session() as s:
            cursor = s.get(EventCursor, "c")
            seen.append(cursor.block if cursor else -1)

    thread = threading.Thread(target=read)
    thread.start()
    thread.join()
    assert seen == [7]


def test_a_failing_transaction_writes_nothing() -> None:
    db = Database("sqlite://")
    with pytest.raises(RuntimeError), db.session() as s:
        s.add(EventCursor(name="c", chain_id=1, contract="0x" + "00" * 20, block=7, log_index=0))
        s.flush()
        raise RuntimeError("crash mid-transaction")
    with db.session() as s:
        assert s.get(EventCursor, "c") is None


def test_bad_url_is_named() -> None:
    with pytest.raises(ConfigError, match="nosuchdb"):
        Database("nosuchdb://x")


def test_db_commands_upgrade_and_report_the_revision(database_url: str) -> None:
    runner = CliRunner()
    before = runner.invoke(app, ["db", "current", "--url", database_url])
    assert (before.exit_code, before.output) == (
        1,
        f"none (head is {migrate.head()}; run `tclearn db upgrade --url ...`)\n",
    )
    upgraded = runner.invoke(app, ["db", "upgrade", "--url", database_url])
    assert upgraded.exit_code == 0, upgraded.output
    assert upgraded.output.endswith(f": at revision {migrate.head()} (head)\n")
    after = runner.invoke(app, ["db", "current", "--url", database_url])
    assert (after.exit_code, after.output) == (0, f"{migrate.head()} (head)\n")
    assert "member_train_jobs" in inspect(create_engine(database_url)).get_table_names()


def test_db_command_names_a_bad_url_in_one_line() -> None:
    result = CliRunner().invoke(app, ["db", "upgrade", "--url", "nosuchdb://x"])
    assert result.exit_code == 1
    assert result.output.startswith("error: invalid database URL 'nosuchdb://x'")
    assert "Traceback" not in result.output


def test_a_reader_of_another_services_database_never_migrates_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/vault-access.db"
    owner = Database(url)
    with owner.engine.begin() as connection:  # the vault runs a newer tclearn: a revision this one does not know
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = 'from-a-newer-tclearn'")
    owner.dispose()

    reader = Database(url, migrate=False)  # as the auditor opens the vault's access log

    assert migrate.current(reader.engine) == "from-a-newer-tclearn"
    assert "vault_access_log" in inspect(reader.engine).get_table_names()
    with pytest.raises(ConfigError):
        Database(url)  # the owner's way refuses a schema it cannot migrate
    reader.dispose()
