"""Opening a deployed coalition from its deployment file: the chain it names, checked, and its contract."""

from __future__ import annotations

from pathlib import Path

from eth_typing import HexStr

from tclearn import __version__
from tclearn.config import Deployment, load_deployment
from tclearn.errors import ConfigError
from tclearn.ledger.chain import EMBEDDED, connect
from tclearn.ledger.client import LedgerClient


def open_deployment(
    path: Path, url: str | None = None, *, nonce_locks: Path | None = None
) -> tuple[Deployment, LedgerClient]:
    """Reads the deployment file, connects (checking the chain id) and checks the contract is there.

    `url` overrides the file's JSON-RPC URL (e.g. the same chain reached through another host); `nonce_locks`
    is the folder of the accounts' nonce lock files (`LedgerClient`).
    """
    deployment = load_deployment(path)
    if (url or deployment.url) == EMBEDDED:
        raise ConfigError(
            f"{path} is a coalition on an embedded chain, which lived only inside the process that ran it; "
            "run it on a node (e.g. `tclearn demo --chain anvil`) to inspect it afterwards"
        )
    chain = connect(url or deployment.url, expected_chain_id=deployment.chain_id)
    return deployment, LedgerClient(chain, deployment.address, nonce_locks=nonce_locks)


def deployment_of(client: LedgerClient, block: int, tx_hash: str, variant: str) -> Deployment:
    """What a deployment file records about the coalition `client` talks to."""
    return Deployment(
        chain_id=client.chain.chain_id,
        address=client.address,
        block=block,
        variant=variant,
        url=client.chain.kind,
        deployer=str(client.w3.eth.get_transaction(HexStr(tx_hash))["from"]),  # paid for it; no power over it (v2)
        tx_hash=tx_hash,
        tclearn_version=__version__,
        contract_sha256=client.artifact.source_sha256,
    )
