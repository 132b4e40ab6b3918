"""`tclearn gov`: the coalition governs itself — a member proposes a change (admit, roles, remove, parameters,
supervisor), the active members vote, and anyone executes it once two thirds approve before its deadline."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from tclearn.cli.common import DeploymentOpt, DevAccountOpt, KeystoreOpt, UrlOpt, console, open_as, user_errors
from tclearn.errors import ConfigError

if TYPE_CHECKING:
    from tclearn.coalition.policy import AcceptancePolicy
    from tclearn.ledger.client import LedgerClient
    from tclearn.ledger.governance import Action, Proposal

app = typer.Typer(
    help="Governance: propose changes to the coalition, vote on them, execute those two thirds approved.",
    no_args_is_help=True,
)
propose_app = typer.Typer(help="Propose a change (your approval counts); the members vote on it.", no_args_is_help=True)
app.add_typer(propose_app, name="propose")

RolesOpt = typer.Option("member,validator", "--roles", help="Comma-separated: member, validator, auditor, supervisor.")
ProposalArg = typer.Argument(..., min=0, help="The proposal's id (`tclearn gov list`).")


def _when(timestamp: int) -> str:
    """A deadline (unix time, as the chain holds it) as UTC."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _names(client: LedgerClient) -> dict[str, str]:
    return {m.address: m.name for m in client.members() if m.name}


def _who(address: str, names: dict[str, str]) -> str:
    name = names.get(address)
    return f"{name} ({address})" if name else address


def _propose(action: Action, deployment: Path, url: str | None, keystore: Path | None, dev_account: int | None) -> None:
    client, member = open_as(deployment, url, keystore, dev_account)
    _announce(client.propose(member, action))


def _announce(p: Proposal) -> None:
    console.print(
        f"proposal [bold]{p.id}[/]: {p.action.describe()}; {p.approvals}/{p.needed} approvals, "
        f"deadline {_when(p.deadline)} (`tclearn gov vote {p.id} --approve`)"
    )


@propose_app.command("admit")
def propose_admit(
    address: str = typer.Argument(..., help="The newcomer's account address."),
    roles: str = RolesOpt,
    key: str = typer.Option("0x" + "00" * 32, "--key", help="Its X25519 public key (32 bytes hex)."),
    name: str = typer.Option("", "--name", help="A human-readable name, e.g. the hospital."),
    deployment: Path = DeploymentOpt,
    url: str | None = UrlOpt,
    keystore: Path | None = KeystoreOpt,
    dev_account: int | None = DevAccountOpt,
) -> None:
    """Propose to admit ADDRESS (or re-admit a removed member) with ROLES."""
    from tclearn.coalition.proposals import key_bytes
    from tclearn.ledger.governance import Admit
    from tclearn.types import Role

    with user_errors():
        action = Admit(address, Role.parse(roles), key_bytes(key, "--key"), name)
        _propose(action, deployment, url, keystore, dev_account)


@propose_app.command("roles")
def propose_roles(
    address: str = typer.Argument(..., help="An active member."),
    roles: str = typer.Option(..., "--roles", help="Its new roles, comma-separated."),
    deployment: Path = DeploymentOpt,
    url: str | None = UrlOpt,
    keystore: Path | None = KeystoreOpt,
    dev_account: int | None = DevAccountOpt,
) -> None:
    """Propose to replace the roles of an active member."""
    from tclearn.ledger.governance import SetRoles
    from tclearn.types import Role

    with user_errors():
        _propose(SetRoles(address, Role.parse(roles)), deployment, url, keystore, dev_account)


@propose_app.command("remove")
def propose_remove(
    address: str = typer.Argument(..., help="An active member."),
    deployment: Path = DeploymentOpt,
    url: str | None = UrlOpt,
    keystore: Path | None = KeystoreOpt,
    dev_account: int | None = DevAccountOpt,
) -> None:
    """Propose to remove a member: it keeps its history but can no longer submit, vote or govern."""
    from tclearn.ledger.governance import Remove

    with user_errors():
        _propose(Remove(address), deployment, url, keystore, dev_account)


@propose_app.command("policy")
def propose_policy(
    policy: Path | None = typer.Option(
        None, "--policy", help="A new acceptance policy record (`tclearn coalition policy`); stored in --vault."
    ),
    vault: str | None = typer.Option(
        None, "--vault", envvar="TCLEARN_VAULT_URL", help="Vault URL where the policy record is stored."
    ),
    general_timeout: int | None = typer.Option(None, "--general-timeout", min=1, help="Seconds a general has."),
    voting_timeout: int | None = typer.Option(None, "--voting-timeout", min=1, help="Seconds validators have."),
    proposal_timeout: int | None = typer.Option(None, "--proposal-timeout", min=1, help="Seconds a proposal lives."),
    min_validators: int | None = typer.Option(None, "--min-validators", min=0, help="Validators always kept."),
    global_test_set: str | None = typer.Option(None, "--global-test-set", help="sha256 of the global test set G."),
    epsilon_cap: float | None = typer.Option(
        None,
        "--epsilon-cap",
        min=0,
        help="Each member's privacy budget on chain, epsilon (0: no cap) \\[default: a new --policy's privacy cap].",
    ),
    deployment: Path = DeploymentOpt,
    url: str | None = UrlOpt,
    keystore: Path | None = KeystoreOpt,
    dev_account: int | None = DevAccountOpt,
) -> None:
    """Propose new coalition parameters: the current ones with those given changed."""
    from tclearn.coalition.declared import policy_file
    from tclearn.coalition.proposals import key_bytes, parameters_change, privacy_cap

    with user_errors():
        record = None if policy is None else policy_file(policy)
        if record is not None and vault is None:
            raise ConfigError("--policy needs --vault: the policy record is stored there for every validator to read")
        client, member = open_as(deployment, url, keystore, dev_account)
        policy_hash = None
        if record is not None:
            assert vault is not None
            policy_hash = _store_policy_record(vault, deployment, bytes(member.key), record)
        action = parameters_change(
            client.parameters(),
            policy_hash,
            general_timeout=general_timeout,
            voting_timeout=voting_timeout,
            proposal_timeout=proposal_timeout,
            min_validators=min_validators,
            global_test_set_hash=None if global_test_set is None else key_bytes(global_test_set, "--global-test-set"),
            epsilon_cap=privacy_cap(record, epsilon_cap),
        )
        _announce(client.propose(member, action))


def _store_policy_record(vault: str, deployment: Path, key: bytes, record: AcceptancePolicy) -> bytes:
    """Stores the policy record in the coalition's vault, signed as the proposer; its sha256."""
    from tclearn.coalition.proposals import store_policy
    from tclearn.vault.audience import CoalitionId
    from tclearn.vault.http import HttpStore

    store = HttpStore(vault, key, coalition=CoalitionId.of_deployment(deployment))
    try:
        return store_policy(store, record)
    finally:
        store.close()


@propose_app.command("supervisor")
def propose_supervisor(
    source: str | None = typer.Option(None, "--from", help="The current supervisor (none: there is none yet)."),
    target: str = typer.Option(..., "--to", help="The active member to become the supervisor."),
    deployment: Path = DeploymentOpt,
    url: str | None = UrlOpt,
    keystore: Path | None = KeystoreOpt,
    dev_account: int | None = DevAccountOpt,
) -> None:
    """Propose to hand the supervisor role (variant C) to another member."""
    from tclearn.coalition.proposals import supervisor_rotation

    with user_errors():
        _propose(supervisor_rotation(source, target), deployment, url, keystore, dev_account)


@app.command("vote")
def vote(
    proposal: int = ProposalArg,
    approve: bool | None = typer.Option(None, "--approve/--reject", help="Your ballot."),
    deployment: Path = DeploymentOpt,
    url: str | None = UrlOpt,
    keystore: Path | None = KeystoreOpt,
    dev_account: int | None = DevAccountOpt,
) -> None:
    """Approve or reject a pending proposal (once; only members that were members when it was made)."""
    with user_errors():
        if approve is None:
            raise ConfigError("say --approve or --reject")
        client, member = open_as(deployment, url, keystore, dev_account)
        client.ballot(member, proposal, approve)
        p = client.proposal(proposal)
        then = " — `tclearn gov execute` it" if p.executable else ""
        console.print(
            f"{'approved' if approve else 'rejected'} proposal {proposal}: {p.approvals}/{p.needed} approvals, "
            f"{p.rejections} rejections, {p.state.name.lower()}{then}"
        )


@app.command("execute")
def execute(
    proposal: int = ProposalArg,
    deployment: Path = DeploymentOpt,
    url: str | None = UrlOpt,
    keystore: Path | None = KeystoreOpt,
    dev_account: int | None = DevAccountOpt,
) -> None:
    """Carry out a proposal two thirds of its members approved (anyone may, before its deadline)."""
    with user_errors():
        client, caller = open_as(deployment, url, keystore, dev_account)
        tx = client.execute(caller, proposal)
        console.print(
            f"executed proposal {proposal}: {client.proposal(proposal).action.describe()} "
            f"(block {tx.block_number}, {tx.gas_used} gas)"
        )


def _proposals_table(proposals: list[Proposal], names: dict[str, str]) -> Table:
    table = Table(title="Proposals")
    for column in ("id", "action", "proposer", "approvals/needed", "rejections", "state", "deadline"):
        table.add_column(column)
    for p in proposals:
        table.add_row(
            str(p.id),
            p.action.describe(),
            names.get(p.proposer, p.proposer),
            f"{p.approvals}/{p.needed}",
            str(p.rejections),
            p.state.name.lower() + (" (executable)" if p.executable else ""),
            _when(p.deadline),
        )
    return table


@app.command("list")
def list_proposals(
    deployment: Path = DeploymentOpt,
    url: str | None = UrlOpt,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Every proposal: what it does, who made it, its tally, state and deadline (UTC; --json: unix time)."""
    from tclearn.cli.common import open_deployment
    from tclearn.coalition.proposals import proposal_json

    with user_errors():
        _, client = open_deployment(deployment, url)
        proposals, names = client.proposals(), _names(client)
    if as_json:
        typer.echo(json.dumps([proposal_json(p, names) for p in proposals], indent=2))
    elif not proposals:
        console.print("no proposal yet (`tclearn gov propose --help`)")
    else:
        console.print(_proposals_table(proposals, names))


@app.command("show")
def show(
    proposal: int = ProposalArg,
    deployment: Path = DeploymentOpt,
    url: str | None = UrlOpt,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """One proposal: its action, tally and every ballot (who, how, in which block)."""
    from tclearn.cli.common import open_deployment
    from tclearn.coalition.proposals import proposal_json

    with user_errors():
        _, client = open_deployment(deployment, url)
        p, names = client.proposal(proposal), _names(client)
    if as_json:
        typer.echo(json.dumps(proposal_json(p, names), indent=2))
        return
    console.print(f"proposal [bold]{p.id}[/]: {p.action.describe()}")
    console.print(
        f"proposed by {_who(p.proposer, names)}; {p.state.name.lower()}, {p.approvals}/{p.needed} approvals of "
        f"{p.eligible} eligible, {p.rejections} rejections, deadline {_when(p.deadline)}"
    )
    ballots = Table(title="Ballots")
    for column in ("member", "ballot", "block"):
        ballots.add_column(column)
    for b in p.ballots:
        ballots.add_row(_who(b.member, names), "approve" if b.approve else "reject", str(b.block_number))
    console.print(ballots)
