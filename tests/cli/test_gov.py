"""`tclearn gov` against a real Anvil node: a coalition of three founders admits a fourth member by proposal,
rejects another proposal, and every mistake (an unknown proposal, a non-member proposing, a second ballot, an
early execution) is one line naming the contract's error."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from tclearn.cli.app import app
from tclearn.coalition.policy import AcceptancePolicy
from tclearn.ledger.accounts import dev_accounts
from tclearn.ledger.localchain import LocalNode

runner = CliRunner()
ACCOUNTS = dev_accounts(7)
FOUNDERS = ACCOUNTS[1:4]  # dev accounts 1..3; 0 deploys, 4 is admitted, 5 is an outsider
NEWCOMER, OUTSIDER = ACCOUNTS[4], ACCOUNTS[5]


def run(*args: str, account: int | None = None) -> Result:
    signing = [] if account is None else ["--dev-account", str(account)]
    return runner.invoke(app, [*args, *signing], env={"COLUMNS": "250"})


def ok(*args: str, account: int | None = None) -> Result:
    result = run(*args, account=account)
    assert result.exit_code == 0, result.output
    return result


def refused(*args: str, account: int | None = None) -> str:
    """The one line a refused command prints on stderr (exit status 1, no traceback)."""
    result = run(*args, account=account)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1
    return result.stderr.strip()


def listed(dep: Path) -> list[dict[str, Any]]:
    return json.loads(ok("gov", "list", "-d", str(dep), "--json").stdout)  # type: ignore[no-any-return]


def deploy(folder: Path, url: str, *extra: str) -> Path:
    """The three founders' coalition deployed from a coalition.toml with `extra` top-level lines."""
    lines = [
        'variant = "A"',
        f'genesis_hash = "0x{"ab" * 32}"',
        'genesis_uri = "vault://genesis"',
        f'policy_hash = "0x{"cd" * 32}"',
        *extra,
        "[chain]",
        f'url = "{url}"',
    ]
    for i, founder in enumerate(FOUNDERS):
        lines += ["[[members]]", f'address = "{founder.address}"', f'name = "founder-{i + 1}"']
    (folder / "coalition.toml").write_text("\n".join(lines) + "\n")
    path = folder / "deployment.json"
    ok("coalition", "deploy", "-c", str(folder / "coalition.toml"), "-o", str(path), account=0)
    return path


@pytest.fixture(scope="module")
def dep(anvil_node: LocalNode, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return deploy(tmp_path_factory.mktemp("gov"), anvil_node.url)


def test_a_member_is_admitted_by_two_thirds_and_the_ballots_are_shown(dep: Path) -> None:
    d = ["-d", str(dep)]
    key = "0x" + "11" * 32
    out = ok("gov", "propose", "admit", NEWCOMER.address, "--roles", "member,validator", "--key", key,
             "--name", "St Mary", *d, account=1).stdout  # fmt: skip
    pid = len(listed(dep)) - 1
    assert f"proposal {pid}" in out and "1/2 approvals" in out
    assert "ProposalNotApproved" in refused("gov", "execute", str(pid), *d, account=0)
    ok("gov", "vote", str(pid), "--approve", *d, account=2)
    assert "AlreadyBalloted" in refused("gov", "vote", str(pid), "--reject", *d, account=2)
    ok("gov", "propose", "roles", FOUNDERS[0].address, "--roles", "member", *d, account=1)  # made before admission
    done = ok("gov", "execute", str(pid), *d, account=0).stdout  # anyone executes an approved proposal
    assert f"executed proposal {pid}: admit St Mary" in done
    members = json.loads(ok("ledger", "show", *d, "--json").stdout)["members"]
    assert {m["name"] for m in members} == {"founder-1", "founder-2", "founder-3", "St Mary"}
    shown = json.loads(ok("gov", "show", str(pid), *d, "--json").stdout)
    assert shown["state"] == "executed" and shown["kind"] == "admit" and shown["needed"] == 2
    assert shown["action"] == {"account": NEWCOMER.address, "roles": ["member", "validator"],
                               "encryption_key": "11" * 32, "name": "St Mary"}  # fmt: skip
    assert [(b["member_name"], b["approve"]) for b in shown["ballots"]] == [("founder-1", True), ("founder-2", True)]
    table = ok("gov", "show", str(pid), *d).stdout
    assert "founder-2" in table and "approve" in table and "executed, 2/2 approvals of 3 eligible" in table
    assert "NotBallotEligible" in refused("gov", "vote", str(pid + 1), "--approve", *d, account=4)


def test_a_proposal_two_members_reject_is_rejected_and_cannot_be_executed(dep: Path) -> None:
    d = ["-d", str(dep)]
    ok("gov", "propose", "remove", FOUNDERS[2].address, *d, account=1)
    pid = len(listed(dep)) - 1
    ok("gov", "vote", str(pid), "--reject", *d, account=2)
    out = ok("gov", "vote", str(pid), "--reject", *d, account=3).stdout
    assert "rejected" in out
    assert listed(dep)[pid]["state"] == "rejected" and listed(dep)[pid]["rejections"] == 2
    line = refused("gov", "execute", str(pid), *d, account=1)
    assert "ProposalNotPending" in line and f"proposal {pid} is rejected" in line
    table = ok("gov", "list", *d).stdout
    assert f"remove {FOUNDERS[2].address}" in table and "rejected" in table and " UTC" in table


def test_roles_parameters_and_supervisor_proposals_describe_their_action(dep: Path) -> None:
    d = ["-d", str(dep)]
    ok("gov", "propose", "roles", FOUNDERS[0].address, "--roles", "member,validator,auditor", *d, account=2)
    ok("gov", "propose", "policy", "--voting-timeout", "120", "--min-validators", "3", *d, account=2)
    ok("gov", "propose", "supervisor", "--to", FOUNDERS[1].address, *d, account=2)
    out = ok("gov", "propose", "policy", "--epsilon-cap", "2.5", *d, account=2).stdout
    *_, roles, parameters, supervisor, cap = listed(dep)
    assert cap["action"]["epsilon_cap"] == 2_500_000 and parameters["action"]["epsilon_cap"] == 0
    assert "privacy cap epsilon 2.5 per member" in cap["description"] and "privacy cap epsilon 2.5" in out
    assert roles["kind"] == "roles" and roles["action"]["roles"] == ["member", "validator", "auditor"]
    assert parameters["kind"] == "parameters" and parameters["action"]["voting_timeout"] == 120
    assert parameters["action"]["min_validators"] == 3 and parameters["action"]["policy_hash"] == "cd" * 32
    assert supervisor["description"] == f"make {FOUNDERS[1].address} the supervisor"
    assert all(p["state"] == "pending" and p["approvals"] == 1 for p in (roles, parameters, supervisor))


@pytest.mark.parametrize(
    ("args", "account", "message"),
    [
        (("gov", "show", "99"), None, "UnknownProposal): no proposal with id 99"),
        (("gov", "vote", "99", "--approve"), 1, "UnknownProposal"),
        (("gov", "execute", "99"), 1, "UnknownProposal"),
        (("gov", "vote", "0"), 1, "say --approve or --reject"),
        (("gov", "propose", "remove", NEWCOMER.address), 5, f"NotMember): {OUTSIDER.address} is not an active member"),
        (("gov", "propose", "admit", FOUNDERS[0].address), 1, "AlreadyMember"),
        (("gov", "propose", "admit", NEWCOMER.address, "--key", "0x12"), 1, "--key: expected 32 bytes"),
        (("gov", "propose", "admit", "0xnope"), 1, "is not an Ethereum address"),
        (("gov", "propose", "roles", OUTSIDER.address, "--roles", "member"), 1, "NotMember"),
        (("gov", "propose", "policy"), 1, "this changes nothing"),
        (("gov", "propose", "policy", "--epsilon-cap", "0"), 1, "this changes nothing"),
        (("gov", "propose", "policy", "--policy", "policy.json"), 1, "--policy needs --vault"),
        (("gov", "propose", "supervisor", "--from", OUTSIDER.address, "--to", NEWCOMER.address), 1, "NotSupervisor"),
    ],
)
def test_bad_input_is_one_line_naming_the_problem(
    dep: Path, tmp_path: Path, args: tuple[str, ...], account: int | None, message: str
) -> None:
    (tmp_path / "policy.json").write_bytes(AcceptancePolicy(max_drift=0.04).encode())
    args = tuple(str(tmp_path / a) if a == "policy.json" else a for a in args)
    assert message in refused(*args, "-d", str(dep), account=account)


def test_a_proposal_past_its_deadline_is_expired(anvil_node: LocalNode, tmp_path: Path) -> None:
    d = ["-d", str(deploy(tmp_path, anvil_node.url, "proposal_timeout = 2"))]
    ok("gov", "propose", "remove", FOUNDERS[2].address, *d, account=1)
    time.sleep(3)
    ok("gov", "propose", "remove", FOUNDERS[1].address, *d, account=3)  # a block stamped past the first's deadline
    assert "ProposalExpired" in refused("gov", "vote", "0", "--approve", *d, account=2)
    assert [p["state"] for p in listed(Path(d[1]))] == ["expired", "pending"]
