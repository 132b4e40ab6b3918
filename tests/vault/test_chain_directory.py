"""The vault checks membership against the Coalition contract on a real chain."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from services.vault.app import create_app
from tclearn.errors import AccessDenied, AuthError
from tclearn.ledger.chain import embedded_chain
from tclearn.ledger.directory import ChainDirectory
from tclearn.ledger.governance import Remove
from tclearn.state.db import Database
from tclearn.vault.audience import Audience, CoalitionId
from tclearn.vault.http import HttpStore
from tclearn.vault.store import FsspecStore
from tests.conftest import deploy_coalition
from tests.vault.conftest import serve_app


def test_directory_follows_the_registry() -> None:
    co = deploy_coalition(embedded_chain(8), validators=3, members=1)
    directory = ChainDirectory(co.client, ttl=0)
    assert all(directory.is_active_member(h.address.lower()) for h in co.hospitals)
    assert not directory.is_active_member(co.spare[0].address)
    assert not directory.is_active_member("not an address")
    assert set(directory.encryption_keys()) == {h.address for h in co.hospitals}
    co.govern(Remove(co.hospitals[0].address))  # removed by two thirds of the members
    assert not directory.is_active_member(co.hospitals[0].address)
    assert co.hospitals[0].address not in directory.encryption_keys()


def test_vault_on_chain_membership(tmp_path: Path) -> None:
    co = deploy_coalition(embedded_chain(8), validators=3)
    ours = CoalitionId.of_client(co.client)
    store, directory = FsspecStore(f"file://{tmp_path}/store"), ChainDirectory(co.client, ttl=0)
    blob = os.urandom(1000)
    digest = hashlib.sha256(blob).hexdigest()
    with serve_app(lambda url: create_app(store, Database("sqlite://"), directory, Audience.of(url, ours))) as url:
        member = HttpStore(url, co.hospitals[0].key, coalition=ours)
        member.put(blob)
        assert member.get(digest) == blob
        with pytest.raises(AuthError, match="audience mismatch"):
            HttpStore(url, co.hospitals[0].key).get(digest)  # signed for no coalition: another audience
        with pytest.raises(AccessDenied):
            HttpStore(url, co.spare[0].key, coalition=ours).get(digest)  # signed, but not a member on chain
        co.govern(Remove(co.hospitals[1].address))
        with pytest.raises(AccessDenied):
            HttpStore(url, co.hospitals[1].key, coalition=ours).get(digest)
