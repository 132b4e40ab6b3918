"""`tclearn db ...`: bring a state database's schema to this tclearn's newest migration, or say where it is.

Mounted under `tclearn db` by `tclearn/cli/app.py`. Every service migrates its database when it starts;
`upgrade` does it ahead of time (a deployment step, or a database other processes will open at once).
SQLAlchemy and Alembic are imported inside the commands, so that `tclearn --help` does not load them.
"""

from __future__ import annotations

import typer

app = typer.Typer(help="State databases: apply the schema migrations, show the revision.")

UrlOpt = typer.Option(
    ..., "--url", help="SQLAlchemy URL, e.g. sqlite:///./vault-data/access.db or postgresql+psycopg://user@host/db."
)


@app.callback()
def _group() -> None:
    """State databases: apply the schema migrations, show the revision."""


@app.command()
def upgrade(url: str = UrlOpt) -> None:
    """Migrate the database at URL to the newest revision (creating its tables if it has none)."""
    from tclearn.cli.common import user_errors
    from tclearn.state.db import open_engine
    from tclearn.state.db import upgrade as upgrade_schema

    with user_errors():
        engine = open_engine(url)
        try:
            revision = upgrade_schema(engine)
            where = engine.url.render_as_string(hide_password=True)
        finally:
            engine.dispose()
    typer.echo(f"{where}: at revision {revision} (head)")


@app.command()
def current(url: str = UrlOpt) -> None:
    """Print the database's revision and whether it is this tclearn's newest (exit 1 when it is behind)."""
    from tclearn.cli.common import user_errors
    from tclearn.state.db import open_engine, reachable
    from tclearn.state.migrate import current as current_revision
    from tclearn.state.migrate import head as head_revision

    with user_errors():
        engine = open_engine(url)
        try:
            revision = reachable(engine, current_revision)
        finally:
            engine.dispose()
    head = head_revision()
    if revision == head:
        typer.echo(f"{revision} (head)")
        return
    typer.echo(f"{revision or 'none'} (head is {head}; run `tclearn db upgrade --url ...`)")
    raise typer.Exit(1)
