"""`tclearn ledger show`: the coalition as the chain records it; `tclearn ledger policy`: the acceptance policy
it declares."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from tclearn.cli.common import DeploymentOpt, UrlOpt, console, open_deployment
from tclearn.cli.vault import ETH_KEY_ENV

if TYPE_CHECKING:
    from tclearn.ledger.history import LedgerHistory

app = typer.Typer(help="Read the ledger.", no_args_is_help=True)


def _short(value: bytes | None) -> str:
    return "0x" + value.hex()[:12] + "…" if value else "-"


def _render(h: LedgerHistory) -> None:
    members = Table(title="Members")
    for col in ("name", "address", "roles", "active"):
        members.add_column(col)
    for m in h.members.values():
        members.add_row(m.name or "-", m.address, ",".join(m.roles.names()), "yes" if m.active else "no")
    console.print(members)
    models = Table(title=f"Models (head = {h.head}, lineage {' -> '.join(map(str, h.lineage()))})")
    for col in ("id", "parent", "state", "proposer", "general", "votes +/-/eligible", "model hash", "uri"):
        models.add_column(col)
    for c in h.candidates.values():
        models.add_row(
            str(c.id),
            "-" if c.id == 0 else str(c.parent_id),
            c.state.name.lower(),
            "-" if c.id == 0 else h.name_of(c.proposer),
            "-" if c.id == 0 else h.name_of(c.general),
            f"{c.approvals}/{c.rejections}/{c.eligible}",
            _short(c.model_hash),
            c.uri,
        )
    console.print(models)
    _render_budgets(h)
    _render_exports(h)


def _epsilon(value: object) -> str:
    return "-" if value is None else f"{value:.6g}"


def _render_budgets(h: LedgerHistory) -> None:
    """Each member's privacy budget, when the coalition keeps a cap or charged anyone."""
    from tclearn.audit.privacy import budgets

    if not h.epsilon_cap and not h.charges:
        return
    table = Table(title="Privacy budget (epsilon: the plain sum of each member's charges on chain; '-': no cap)")
    for col in ("name", "address", "spent", "cap", "left", "charges"):
        table.add_column(col)
    charges = Counter(c.member for c in h.charges)
    for b in budgets(h):
        view = b.view()
        spent, cap, left = (_epsilon(view[k]) for k in ("spent", "cap", "left"))
        table.add_row(b.name, b.address, spent, cap, left, str(charges[b.address]))
    console.print(table)


def _render_exports(h: LedgerHistory) -> None:
    """Every committed model taken out with a fingerprint (`tclearn export`), when there is one."""
    if not h.exports:
        return
    table = Table(title="Exports (each copy carries its member's fingerprint: `tclearn trace` finds it)")
    for col in ("export", "model", "member", "block", "fingerprint commitment", "key blob"):
        table.add_column(col)
    for e in h.exports:
        table.add_row(
            str(e.id), str(e.model_id), h.name_of(e.member), str(e.block), _short(e.fingerprint), _short(e.key_blob)
        )
    console.print(table)


@app.command("show")
def show(
    deployment: Path = DeploymentOpt,
    url: str | None = UrlOpt,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Members, models, generals and votes, each member's privacy budget and the exports, rebuilt from the contract's
    logs."""
    from tclearn.audit.privacy import budgets
    from tclearn.ledger.history import rebuild, to_json

    dep, client = open_deployment(deployment, url)
    history = rebuild(client.events(from_block=dep.block))
    if as_json:
        payload = {
            "chain_id": dep.chain_id,
            "address": dep.address,
            "variant": dep.variant,
            **to_json(history),
            "budgets": [b.view() for b in budgets(history)],
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    console.print(
        f"Coalition [bold]{dep.address}[/] on chain {dep.chain_id}, variant {dep.variant}, acceptance policy "
        f"0x{history.policy_hash.hex()} (`tclearn ledger policy` for its settings)"
    )
    _render(history)


@app.command("policy")
def policy(
    deployment: Path = DeploymentOpt,
    url: str | None = UrlOpt,
    vault: str | None = typer.Option(
        None, "--vault", envvar="TCLEARN_VAULT_URL", help="Vault URL: read the policy's settings from its record."
    ),
) -> None:
    """The acceptance policy every validator applies: its hash on chain, every declaration, and (with --vault) its
    settings, read from the vault and checked against the hash. Prints JSON."""
    from tclearn.coalition.declared import read_policy
    from tclearn.ledger.history import rebuild
    from tclearn.vault.audience import CoalitionId
    from tclearn.vault.http import HttpStore

    dep, client = open_deployment(deployment, url)
    history = rebuild(client.events(from_block=dep.block))
    digest = client.policy_hash()
    payload: dict[str, object] = {
        "policy_hash": "0x" + digest.hex(),
        "declared": [
            {"hash": "0x" + p.hash.hex(), "from_model": p.from_model, "block": p.block} for p in history.policies
        ],
        "settings": None,
    }
    if vault is not None:
        store = HttpStore(vault, os.environ.get(ETH_KEY_ENV), coalition=CoalitionId.of_deployment(deployment))
        try:
            payload["settings"] = read_policy(store, digest).to_json()
        finally:
            store.close()
    typer.echo(json.dumps(payload, indent=2))
