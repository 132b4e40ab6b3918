"""`tclearn audit verify`: exit codes, JSON, failures named on stderr, vault and deployment errors.

The chain is the embedded one, handed to the command in place of the deployment file's endpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from eth_account.signers.local import LocalAccount
from typer.testing import CliRunner

from tclearn.audit.verify import hex_hash
from tclearn.cli import audit as audit_cli
from tclearn.ledger.chain import Chain
from tclearn.vault.audience import ZERO_ADDRESS
from tests.audit.conftest import AuditedRun, run_coalition
from tests.vault.conftest import LiveVault

runner = CliRunner()


@pytest.fixture
def on_chain(run: AuditedRun, monkeypatch: pytest.MonkeyPatch) -> AuditedRun:
    monkeypatch.setattr(audit_cli, "open_deployment", lambda path, url: (SimpleNamespace(block=0), run.client))
    return run


def test_a_clean_run_exits_0_with_json(on_chain: AuditedRun) -> None:
    result = runner.invoke(audit_cli.app, ["verify", "--vault", on_chain.store.url, "--json"])

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["lineage"] == [0, on_chain.committed]
    assert [f["severity"] for f in report["findings"]] == ["info"]


def test_a_tampered_blob_exits_1_naming_model_and_hash(on_chain: AuditedRun) -> None:
    digest = on_chain.history().candidates[on_chain.committed].model_hash
    on_chain.blob_file(digest).write_bytes(b"not the model")

    result = runner.invoke(audit_cli.app, ["verify", "--vault", on_chain.store.url])

    assert result.exit_code == 1
    assert f"error: model {on_chain.committed}: model blob {hex_hash(digest)} is tampered" in result.stderr
    assert "FAILED" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--vault", "memory://x", "--deployment", "nope.json"], "nope.json"),
        (["--vault", "no-scheme"], "expected a URL"),
        (["--vault", "https://vault.example", "--key-env", "TCLEARN_TEST_UNSET_KEY"], "TCLEARN_TEST_UNSET_KEY"),
    ],
)
def test_user_mistakes_are_one_line_on_stderr(args: list[str], message: str) -> None:
    result = runner.invoke(audit_cli.app, ["verify", *args])

    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_vault_is_required() -> None:
    result = runner.invoke(audit_cli.app, ["verify"])

    assert result.exit_code == 2 and "--vault" in result.output


def test_an_http_vault_needs_the_auditors_key(
    chain: Chain, live_vault: LiveVault, member: LocalAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = run_coalition(chain, live_vault.store)
    member_file_vault = SimpleNamespace(block=0, chain_id=0, address=ZERO_ADDRESS)  # the vault's audience: no chain
    monkeypatch.setattr(audit_cli, "open_deployment", lambda path, url: (member_file_vault, run.client))
    monkeypatch.setenv("AUDITOR_KEY", member.key.hex())

    anonymous = runner.invoke(audit_cli.app, ["verify", "--vault", live_vault.url])
    signed = runner.invoke(audit_cli.app, ["verify", "--vault", live_vault.url, "--key-env", "AUDITOR_KEY"])

    assert anonymous.exit_code == 1 and "--key-env" in anonymous.stderr
    assert signed.exit_code == 0, signed.output


def test_report_writes_html_with_the_audit_verdict(on_chain: AuditedRun, tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"variant": "B", "scores": {"coalition": 0.8, "single": {"a": 0.6}}}))

    result = runner.invoke(
        audit_cli.app,
        ["report", "--out", str(tmp_path / "r"), "--summary", str(summary), "--vault", on_chain.store.url],
    )

    assert result.exit_code == 0, result.output
    html = (tmp_path / "r" / "report.html").read_text()
    assert 'Audit: <span class="ok">OK</span>' in html and (tmp_path / "r" / "comparison.png").exists()


def test_report_refuses_a_summary_that_is_not_an_object(tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    summary.write_text("[1, 2]")

    result = runner.invoke(audit_cli.app, ["report", "--out", str(tmp_path), "--summary", str(summary)])

    assert result.exit_code == 1 and "expected a JSON object, got list" in result.stderr
