"""The state suite's databases: SQLite, and a real PostgreSQL server started once per session.

Without PostgreSQL installed (`make postgres-tools`) its tests are skipped locally and fail in CI (CI set).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import missing_tool
from tests.state.postgres import LocalPostgres, postgres_bin


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    bin_dir = postgres_bin()
    if bin_dir is None:
        missing_tool("PostgreSQL is not installed (/usr/lib/postgresql/*/bin/postgres); run `make postgres-tools`")
    with LocalPostgres(bin_dir) as server:
        yield server


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh, empty database: an SQLite file, or a new database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('state')}/state.db"
    server: LocalPostgres = request.getfixturevalue("postgres")
    return server.new_database()
