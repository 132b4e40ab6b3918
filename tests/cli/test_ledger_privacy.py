"""`tclearn ledger show` on Anvil: each member's privacy budget (spent, cap, left) rebuilt from the logs, as a table
and in `--json`, against the contract's own counters."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tclearn.cli.app import app
from tclearn.config import save_deployment
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.deployment import deployment_of
from tclearn.ledger.governance import Admit, Parameters
from tclearn.ledger.localchain import LocalNode
from tclearn.ledger.values import epsilon_of, epsilon_units
from tclearn.types import Role, Variant
from tests.conftest import node_chain

runner = CliRunner()
CAP = epsilon_units(3.0)
CHARGES = [epsilon_units(1.25), epsilon_units(0.5)]  # both by founder-1


@pytest.fixture(scope="module")
def charged(anvil_node: LocalNode, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LedgerClient]:
    chain = node_chain(anvil_node)
    deployer, *founders = chain.dev_keys[:4]
    client, tx = LedgerClient.deploy(
        chain,
        deployer,
        variant=Variant.A,
        genesis_hash=os.urandom(32),
        genesis_uri="vault://genesis",
        parameters=Parameters(policy_hash=os.urandom(32), min_validators=2, epsilon_cap=CAP),
        founders=[
            Admit(f.address, Role.MEMBER | Role.VALIDATOR, os.urandom(32), f"founder-{i + 1}")
            for i, f in enumerate(founders)
        ],
    )
    for charge in CHARGES:
        client.submit(founders[0], 0, os.urandom(32), "vault://x", os.urandom(32), charge)
    path = tmp_path_factory.mktemp("ledger-privacy") / "deployment.json"
    save_deployment(deployment_of(client, tx.block_number, tx.tx_hash, "A"), path)
    return path, client


def test_the_json_gives_every_members_budget_as_the_contract_counts_it(charged: tuple[Path, LedgerClient]) -> None:
    path, client = charged
    result = runner.invoke(app, ["ledger", "show", "-d", str(path), "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    budgets = {b["name"]: b for b in shown["budgets"]}
    assert sorted(budgets) == ["founder-1", "founder-2", "founder-3"]
    for b in budgets.values():
        assert b["spent_units"] == client.privacy_spent(b["address"])
        assert b["cap_units"] == client.parameters().epsilon_cap == CAP
    first = budgets["founder-1"]
    assert first["spent_units"] == sum(CHARGES) and first["left_units"] == CAP - sum(CHARGES)
    assert first["spent"] == epsilon_of(sum(CHARGES)) and first["cap"] == 3.0
    assert first["left"] == pytest.approx(3.0 - 1.25 - 0.5)
    assert budgets["founder-2"]["left"] == 3.0
    assert [c["charge"] for c in shown["privacy"]["charges"]] == CHARGES


def test_the_table_shows_spent_cap_and_left(charged: tuple[Path, LedgerClient]) -> None:
    path, _ = charged
    result = runner.invoke(app, ["ledger", "show", "-d", str(path)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    table = result.stdout[result.stdout.index("Privacy budget") :]
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[3:7]] for line in table.splitlines()[4:7]}
    assert rows == {
        "founder-1": ["1.75", "3", "1.25", "2"],
        "founder-2": ["0", "3", "3", "0"],
        "founder-3": ["0", "3", "3", "0"],
    }
