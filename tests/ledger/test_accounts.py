"""Keystores, dev keys, nonces across threads, and the bad-input errors of connecting and signing."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from tclearn.errors import AuthError, ChainUnreachable, ConfigError, NoContract, NotFoundError, WrongChain
from tclearn.ledger.accounts import dev_accounts, load_keystore, new_account, save_keystore
from tclearn.ledger.chain import Chain, connect
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.localchain import LocalNode, free_port
from tclearn.vault.keys import generate_key, save_key
from tests.conftest import Coalition


def test_dev_accounts_are_anvils() -> None:
    assert dev_accounts(2)[0].address == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    assert dev_accounts(2)[1].address == "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def test_keystore_round_trip_and_wrong_password(tmp_path: Path) -> None:
    account = new_account()
    path = save_keystore(account, tmp_path / "k.json", "correct horse")
    assert path.stat().st_mode & 0o077 == 0, "keystore readable by others"
    assert load_keystore(path, "correct horse").address == account.address
    with pytest.raises(AuthError, match="wrong password"):
        load_keystore(path, "battery staple")
    with pytest.raises(ConfigError, match="already exists"):
        save_keystore(account, path, "x")
    with pytest.raises(NotFoundError):
        load_keystore(tmp_path / "missing.json", "x")
    (tmp_path / "junk.json").write_text("not json")
    with pytest.raises(ConfigError, match="not a keystore"):
        load_keystore(tmp_path / "junk.json", "x")


def test_keystore_is_scrypt_and_refuses_a_member_key(tmp_path: Path) -> None:
    account = new_account()
    document = json.loads(save_keystore(account, tmp_path / "k.json", "pw").read_text())
    assert document["crypto"]["kdf"] == "scrypt" and document["crypto"]["kdfparams"]["n"] == 2**18
    assert document["address"].lower() == account.address[2:].lower()  # the standard document, as wallets write it
    save_key(tmp_path / "member.key", generate_key(), b"pw")
    with pytest.raises(ConfigError, match=r"member\.key' holds a key of kind 'x25519', not an Ethereum account key"):
        load_keystore(tmp_path / "member.key", "pw")


def test_one_account_sending_from_many_threads(coalition: Coalition) -> None:
    member, client = coalition.hospitals[0], coalition.client
    errors: list[BaseException] = []

    def send() -> None:
        try:
            client.set_encryption_key(member, os.urandom(32))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=send) for _ in range(8)]
    before = coalition.chain.w3.eth.get_transaction_count(member.address)
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert coalition.chain.w3.eth.get_transaction_count(member.address) == before + 8


def test_unreachable_url() -> None:
    with pytest.raises(ChainUnreachable, match="no chain answers"):
        connect(f"http://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(ChainUnreachable, match="unsupported chain URL"):
        connect("ftp://example")


def test_wrong_chain_id(anvil_node: LocalNode) -> None:
    with pytest.raises(WrongChain, match="31337"):
        connect(anvil_node.url, expected_chain_id=1)


def test_address_without_the_contract(coalition: Coalition, chain: Chain) -> None:
    with pytest.raises(NoContract, match="no contract"):
        LedgerClient(chain, coalition.deployer.address)
    with pytest.raises(ConfigError, match="not an Ethereum address"):
        LedgerClient(chain, "0x1234")
