"""`tclearn --help` stays fast: importing the CLI loads no heavy library; each command imports what it uses.

A test of the import graph, not a timing test: a fresh interpreter imports `tclearn.cli.app` and builds the
whole command tree (as `--help` does), then reports which of the heavy libraries landed in `sys.modules`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# torch and MONAI: seconds; web3 and eth-account ~2 s together; FastAPI and SQLAlchemy: the services' stack.
HEAVY = ("torch", "monai", "web3", "eth_account", "fastapi", "sqlalchemy")

PROBE = f"""
import json, sys
import typer.main
from tclearn.cli.app import app
typer.main.get_command(app)  # what `tclearn --help` builds: every group, command and option
print(json.dumps(sorted({{name.split(".")[0] for name in sys.modules}} & set({HEAVY!r}))))
"""


def loaded_by(code: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def test_the_cli_imports_no_heavy_library() -> None:
    assert loaded_by(PROBE) == []


def test_the_probe_sees_a_heavy_import() -> None:
    """The check can fail: a command module that imports torch at the top is caught."""
    assert "torch" in loaded_by("import tclearn.learning.attacks\n" + PROBE)


def test_help_lists_every_command_group() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tclearn.cli.app", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    for group in ("chain", "account", "coalition", "member", "ledger", "vault", "node", "supervisor", "audit"):
        assert group in done.stdout


def test_a_signing_client_loads_no_database_stack() -> None:
    """`HttpStore` only signs requests: the replay store's SQL table is the services' (`replay_db.py`)."""
    probe = "import json, sys\nimport tclearn.vault.http\n"
    probe += "print(json.dumps(sorted({n.split('.')[0] for n in sys.modules} & {'sqlalchemy', 'alembic'})))"

    assert loaded_by(probe) == []
