"""`tclearn coalition deploy`: deploy the Coalition contract and register the first members."""

from __future__ import annotations

from pathlib import Path

import typer

from tclearn.cli.common import DevAccountOpt, KeystoreOpt, console, deployment_of, signer
from tclearn.config import load_coalition_config, save_deployment
from tclearn.errors import ConfigError
from tclearn.ledger.chain import connect
from tclearn.ledger.client import LedgerClient
from tclearn.types import Variant

app = typer.Typer(help="Coalitions: deploy and run.", no_args_is_help=True)


@app.command("deploy")
def deploy(
    config: Path = typer.Option(Path("coalition.toml"), "--config", "-c", help="The coalition to deploy."),
    out: Path = typer.Option(Path("deployment.json"), "--out", "-o", help="Where to write the deployment file."),
    url: str | None = typer.Option(None, "--chain", help="JSON-RPC URL (default: [chain] url in the config)."),
    keystore: Path | None = KeystoreOpt,
    dev_account: int | None = DevAccountOpt,
) -> None:
    """Deploy a coalition from CONFIG; the signer becomes its admin."""
    cfg = load_coalition_config(config)
    if out.exists():
        raise ConfigError(f"{out} already exists; move it away or choose another --out")
    chain = connect(url or cfg.chain.url, expected_chain_id=cfg.chain.chain_id)
    if chain.embedded:
        raise ConfigError("an embedded chain lives only inside one process; deploy to a node (`tclearn chain up`)")
    admin = signer(chain, keystore, dev_account)
    client, tx = LedgerClient.deploy(
        chain,
        admin,
        variant=Variant.parse(cfg.variant),
        genesis_hash=cfg.genesis_hash,
        genesis_uri=cfg.genesis_uri,
        global_test_set_hash=cfg.global_test_set_hash,
        general_timeout=cfg.general_timeout,
        voting_timeout=cfg.voting_timeout,
    )
    deployment = deployment_of(client, tx.block_number, tx.tx_hash, cfg.variant)
    save_deployment(deployment, out)  # written before members: a failure below leaves a usable deployment
    console.print(
        f"Coalition (variant {cfg.variant}) at [bold]{client.address}[/] on chain {chain.chain_id}, "
        f"block {tx.block_number}, {tx.gas_used} gas -> {out}"
    )
    for member in cfg.members:
        added = client.register_member(admin, member.address, member.role_flags, member.encryption_key, member.name)
        console.print(
            f"  registered {member.name or member.address} as {', '.join(member.roles)} ({added.gas_used} gas)"
        )
