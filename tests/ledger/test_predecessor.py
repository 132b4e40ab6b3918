"""Migration: a v2 coalition founded from a v1 coalition's head (genesis = the old head, the link recorded).

The v1 coalition is the contract tclearn v1 deployed (tests/ledger/data/coalition-v1.json, its build artifact as
released), driven here through its own ABI on the embedded chain."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tclearn.errors import NoContract
from tclearn.ledger.chain import Chain, embedded_chain
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.governance import Admit, Parameters
from tclearn.ledger.nonces import default_lock_dir
from tclearn.ledger.predecessor import V1_RUNTIME_SHA256, read_head
from tclearn.ledger.sending import Sender, send
from tclearn.types import Role, Variant

V1 = json.loads((Path(__file__).parent / "data" / "coalition-v1.json").read_text())
URI = "vault://sha256/" + "cd" * 32


def v1_coalition(chain: Chain) -> tuple[Any, bytes]:
    """A v1 coalition with one committed increment on its genesis; returns the contract and the head's hash."""
    admin, proposer, a, b = chain.dev_keys[:4]

    def tx(account: Any, fn: Any) -> Any:
        return send(chain, Sender.on(chain, account, default_lock_dir()), fn, "v1", None, timeout=30)

    factory = chain.w3.eth.contract(abi=V1["abi"], bytecode=V1["bytecode"])
    receipt = tx(admin, factory.constructor(2, os.urandom(32), "g", b"\x00" * 32, os.urandom(32), 600, 600))
    v1 = chain.w3.eth.contract(address=receipt["contractAddress"], abi=V1["abi"])
    tx(admin, v1.functions.registerMember(proposer.address, int(Role.MEMBER), os.urandom(32), "p"))
    for v in (a, b):
        tx(admin, v1.functions.registerMember(v.address, int(Role.MEMBER | Role.VALIDATOR), os.urandom(32), "v"))
    head_hash = os.urandom(32)
    tx(proposer, v1.functions.submit(0, head_hash, URI, os.urandom(32)))
    general = v1.functions.getModel(1).call()[7]
    by_address = {a.address: a, b.address: b}
    tx(by_address[general], v1.functions.openCandidate(1, True, os.urandom(32)))
    for v in (a, b):
        tx(v, v1.functions.vote(1, True, 900_000, 800_000, os.urandom(32)))
    assert v1.functions.head().call() == 1
    return v1, head_hash


def test_a_v2_coalition_continues_a_v1_head_and_records_the_link() -> None:
    chain = embedded_chain(6)
    v1, head_hash = v1_coalition(chain)
    head = read_head(chain, v1.address)
    assert (head.version, head.variant, head.model_hash, head.uri) == (1, Variant.B, head_hash, URI)
    assert (head.link.chain_id, head.link.coalition, head.link.head_id) == (chain.chain_id, v1.address, 1)

    founders = [
        Admit(k.address, Role.MEMBER | Role.VALIDATOR, os.urandom(32), f"h{i}")
        for i, k in enumerate(chain.dev_keys[1:4])
    ]
    v2, deployed = LedgerClient.deploy(
        chain,
        chain.dev_keys[0],
        variant=head.variant,
        genesis_hash=head.model_hash,
        genesis_uri=head.uri,
        parameters=Parameters(os.urandom(32)),
        founders=founders,
        predecessor=head.link,
    )
    founded = deployed.event("Founded")
    assert founded is not None
    assert founded.args["predecessor"] == v1.address
    assert (founded.args["predecessorChainId"], founded.args["predecessorHeadId"]) == (chain.chain_id, 1)
    assert founded.args["genesisHash"] == head_hash
    genesis = v2.get_model(0)
    assert (genesis.model_hash, genesis.uri) == (head_hash, URI)

    again = read_head(chain, v2.address)  # a v2 coalition can itself be continued
    assert (again.version, again.model_hash, again.link.coalition, again.link.head_id) == (2, head_hash, v2.address, 0)


def test_only_a_tclearn_coalition_can_be_continued() -> None:
    chain = embedded_chain(3)
    with pytest.raises(NoContract, match="no contract at"):
        read_head(chain, chain.dev_keys[1].address)
    # any other contract: a tiny one whose runtime code returns 42
    receipt = send(
        chain,
        Sender.on(chain, chain.dev_keys[0], default_lock_dir()),
        chain.w3.eth.contract(abi=[], bytecode="0x600a600c600039600a6000f3602a60005260206000f3").constructor(),
        "deploy",
        None,
        timeout=30,
    )
    with pytest.raises(NoContract, match="neither a tclearn Coalition v1 nor"):
        read_head(chain, receipt["contractAddress"])
    assert hashlib.sha256(bytes.fromhex(V1["deployedBytecode"][2:])).hexdigest() == V1_RUNTIME_SHA256
