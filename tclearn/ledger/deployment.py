"""Opening a deployed coalition from its deployment file: the chain it names, checked, and its contract."""

from __future__ import annotations

from pathlib import Path

from tclearn.config import Deployment, load_deployment
from tclearn.errors import ConfigError
from tclearn.ledger.chain import EMBEDDED, connect
from tclearn.ledger.client import LedgerClient


def open_deployment(path: Path, url: str | None = None) -> tuple[Deployment, LedgerClient]:
    """Reads the deployment file, connects (checking the chain id) and checks the contract is there.

    `url` overrides the file's JSON-RPC URL (e.g. the same chain reached through another host).
    """
    deployment = load_deployment(path)
    if (url or deployment.url) == EMBEDDED:
        raise ConfigError(
            f"{path} is a coalition on an embedded chain, which lived only inside the process that ran it; "
            "run it on a node (e.g. `tclearn demo --chain anvil`) to inspect it afterwards"
        )
    chain = connect(url or deployment.url, expected_chain_id=deployment.chain_id)
    return deployment, LedgerClient(chain, deployment.address)
