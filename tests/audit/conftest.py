"""A small coalition run on the embedded chain whose blobs really sit in a file vault: one commit, a new
acceptance policy, one candidate rejected for integrity (its blob never stored), one voted down."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from tclearn.coalition.policy import AcceptancePolicy
from tclearn.ledger.chain import Chain, embedded_chain
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.governance import Admit, Parameters, SetParameters
from tclearn.ledger.history import LedgerHistory, rebuild
from tclearn.types import ModelState, Role, Variant
from tclearn.vault.store import FsspecStore
from tests.conftest import ACCOUNTS
from tests.governing import govern


@dataclass
class AuditedRun:
    client: LedgerClient
    store: FsspecStore
    committed: int
    broken: int
    voted_down: int

    def history(self) -> LedgerHistory:
        return rebuild(self.client.events())

    def blob_file(self, digest: bytes) -> Path:
        return Path(self.store.blob_path(digest.hex()))


def put(store: FsspecStore, data: bytes) -> bytes:
    """Stores `data` and returns its sha256 as the 32 raw bytes the chain holds."""
    return bytes.fromhex(store.put(data))


def put_json(store: FsspecStore, document: dict[str, object]) -> bytes:
    return put(store, json.dumps(document, sort_keys=True, separators=(",", ":")).encode())


def run_coalition(chain: Chain, store: FsspecStore) -> AuditedRun:
    deployer, *hospitals = chain.dev_keys[:5]
    founders = [
        Admit(h.address, Role.MEMBER | Role.VALIDATOR, os.urandom(32), f"hospital-{i}") for i, h in enumerate(hospitals)
    ]
    client, _ = LedgerClient.deploy(
        chain,
        deployer,
        variant=Variant.B,
        genesis_hash=put(store, b"genesis weights"),
        genesis_uri="vault://genesis",
        parameters=Parameters(policy_hash=put(store, AcceptancePolicy().encode())),
        founders=founders,
    )
    by_address = {h.address: h for h in hospitals}

    def submit(proposer_index: int, blob: bytes, store_blob: bool = True) -> int:
        model_hash = put(store, blob) if store_blob else hashlib.sha256(blob).digest()
        metadata = put_json(store, {"parent": client.head(), "samples": 10 + proposer_index})
        return client.submit(hospitals[proposer_index], client.head(), model_hash, "vault://m", metadata).model_id

    def open_(model_id: int, ok: bool) -> None:
        general = by_address[client.get_model(model_id, with_uri=False).general]
        client.open_candidate(general, model_id, ok, put_json(store, {"model": model_id, "ok": ok}))

    def vote_until_decided(model_id: int, approve: bool) -> None:
        proposer = client.get_model(model_id, with_uri=False).proposer
        for h in hospitals:
            if h.address == proposer:
                continue
            evidence = put_json(store, {"model": model_id, "validator": h.address, "approve": approve})
            outcome = client.vote(h, model_id, approve, 0.8 if approve else 0.2, 0.7, evidence)
            if outcome.state != ModelState.OPEN:
                return

    committed = submit(0, b"increment one")
    open_(committed, True)
    vote_until_decided(committed, True)
    newer = client.parameters().replace(policy_hash=put(store, AcceptancePolicy(max_drift=0.04).encode()))
    govern(client, hospitals, SetParameters(newer))  # from the next candidate on
    broken = submit(1, b"corrupt increment", store_blob=False)
    open_(broken, False)
    voted_down = submit(2, b"poisoned increment")
    open_(voted_down, True)
    vote_until_decided(voted_down, False)
    return AuditedRun(client, store, committed, broken, voted_down)


@pytest.fixture(scope="session")
def _template_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[AuditedRun, Path]:
    root = tmp_path_factory.mktemp("template") / "vault"
    return run_coalition(embedded_chain(ACCOUNTS), FsspecStore(f"file://{root}")), root


@pytest.fixture
def run(_template_run: tuple[AuditedRun, Path], tmp_path: Path) -> AuditedRun:
    """The run, played once per session; each test gets its own copy of the vault to damage."""
    template, root = _template_run
    shutil.copytree(root, tmp_path / "vault")
    return replace(template, store=FsspecStore(f"file://{tmp_path}/vault"))


# The live vault service of the vault suite, for the CLI's HTTP case.
from tests.vault.conftest import directory, live_vault, member  # noqa: E402, F401
