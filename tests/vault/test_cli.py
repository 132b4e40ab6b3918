"""`tclearn vault` commands against a live vault service."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from eth_account.signers.local import LocalAccount
from typer.testing import CliRunner

from tclearn.cli.vault import app

if TYPE_CHECKING:
    from tests.vault.conftest import LiveVault


def test_keygen_seal_unseal_put_get(
    live_vault: LiveVault, member: LocalAccount, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    monkeypatch.setenv("TCLEARN_KEY_PASSWORD", "pw")
    monkeypatch.setenv("TCLEARN_ETH_KEY", member.key.hex())
    monkeypatch.setenv("TCLEARN_VAULT_URL", live_vault.url)
    model = tmp_path / "model.safetensors"
    model.write_bytes(os.urandom(3000))

    keygen = runner.invoke(app, ["keygen", str(tmp_path / "me.key")])
    (tmp_path / "members.json").write_text(json.dumps({member.address: keygen.output.strip()}))
    sealed = runner.invoke(app, ["seal", str(model), str(tmp_path / "members.json")])
    unsealed = runner.invoke(app, ["unseal", sealed.output.strip(), str(tmp_path / "out"), str(tmp_path / "me.key")])
    stored = runner.invoke(app, ["put", str(model)])
    fetched = runner.invoke(app, ["get", stored.output.strip(), str(tmp_path / "plain")])

    assert [r.exit_code for r in (keygen, sealed, unsealed, stored, fetched)] == [0] * 5
    assert (tmp_path / "out").read_bytes() == model.read_bytes() == (tmp_path / "plain").read_bytes()
