"""Reading the head of the coalition a new one continues (a migration from contract v1, or from another v2).

A v2 coalition can be founded from an older coalition's head: its genesis is that head's model and its constructor
records the link (`Founded(predecessorChainId, predecessor, predecessorHeadId, genesisHash)`), so an auditor goes
from the new lineage's genesis to the old lineage's head. The v1 contract is recognised by the sha256 of its
runtime code and read through the three v1 views the migration needs; the `Submitted` event (the head's URI) has
the same signature in both versions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from eth_utils import to_checksum_address

from tclearn.errors import ConfigError, NoContract
from tclearn.ledger.artifact import load_artifact
from tclearn.ledger.chain import Chain
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.events import events_about
from tclearn.ledger.ledger import Predecessor
from tclearn.types import ModelState, Variant

V1_RUNTIME_SHA256 = "038eec897cb4b433bc8cf741304ac2f4f4a76b8b0e304318bace70d1e8a73c44"
"""sha256 of the runtime code of Coalition.sol v1 as tclearn 0.x deployed it (solc 0.8.37, paris)."""

_MODEL_VIEW_V1 = [
    {"name": "modelHash", "type": "bytes32"},
    {"name": "metadataHash", "type": "bytes32"},
    {"name": "proposer", "type": "address"},
    {"name": "parentId", "type": "uint256"},
    {"name": "state", "type": "uint8"},
    {"name": "eligible", "type": "uint16"},
    {"name": "rejections", "type": "uint16"},
    {"name": "general", "type": "address"},
    {"name": "generalDeadline", "type": "uint64"},
    {"name": "votingDeadline", "type": "uint64"},
    {"name": "approvals", "type": "uint16"},
]
V1_VIEWS: list[dict[str, Any]] = [
    {"type": "function", "name": "head", "stateMutability": "view", "inputs": [], "outputs": [{"type": "uint48"}]},
    {"type": "function", "name": "variant", "stateMutability": "view", "inputs": [], "outputs": [{"type": "uint8"}]},
    {
        "type": "function",
        "name": "getModel",
        "stateMutability": "view",
        "inputs": [{"name": "id", "type": "uint256"}],
        "outputs": [{"name": "v", "type": "tuple", "components": _MODEL_VIEW_V1}],
    },
]


@dataclass(frozen=True)
class PredecessorHead:
    """The committed head of an older coalition, as a new one's genesis."""

    link: Predecessor
    version: int  # the contract version it runs: 1 or 2
    variant: Variant
    model_hash: bytes
    uri: str


def read_head(chain: Chain, address: str) -> PredecessorHead:
    """The head of the coalition at `address` on `chain` (contract v1 or v2); `NoContract` for anything else."""
    try:
        address = to_checksum_address(address)
    except ValueError:
        raise ConfigError(f"{address!r} is not an Ethereum address") from None
    code = bytes(chain.w3.eth.get_code(address))
    if not code:
        raise NoContract(f"no contract at {address} on chain {chain.chain_id}: nothing to continue from")
    if "0x" + code.hex() == load_artifact().deployed_bytecode:
        client = LedgerClient(chain, address)
        head = client.head()
        model = client.get_model(head)
        link = Predecessor(chain.chain_id, address, head)
        return PredecessorHead(link, 2, client.variant(), model.model_hash, model.uri or "")
    if hashlib.sha256(code).hexdigest() != V1_RUNTIME_SHA256:
        raise NoContract(
            f"the contract at {address} is neither a tclearn Coalition v1 nor this version's v2: "
            "a migration continues a tclearn coalition only"
        )
    views = chain.w3.eth.contract(address=address, abi=V1_VIEWS).functions
    head = int(views.head().call())
    model = views.getModel(head).call()
    if ModelState(model[4]) is not ModelState.COMMITTED:  # a v1 head is always committed; anything else is corrupt
        raise NoContract(f"the head {head} of the v1 coalition at {address} is not committed")
    submitted = events_about(chain.w3, address, {"Submitted"}, head, chain.latest_block())
    uri = str(submitted[0].args["uri"]) if submitted else ""
    variant = Variant(int(views.variant().call()))
    return PredecessorHead(Predecessor(chain.chain_id, address, head), 1, variant, bytes(model[0]), uri)
