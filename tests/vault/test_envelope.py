"""Variant B envelope: sealing for 1..50 recipients, refusals, and granting a late member."""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account import Account
from eth_account.signers.local import LocalAccount

from tclearn.errors import AccessDenied, AuthError, ConflictError, IntegrityError
from tclearn.vault.directory import StaticDirectory
from tclearn.vault.envelope import (
    Keyring,
    add_wraps,
    grant,
    load_keyring,
    public_bytes,
    recipients_of,
    seal,
    unseal,
    unwrap_key,
    wrap_key,
)
from tclearn.vault.http import HttpStore
from tclearn.vault.store import FsspecStore

if TYPE_CHECKING:
    from tests.vault.conftest import LiveVault

PLAINTEXT = os.urandom(5000)


def account(index: int) -> LocalAccount:
    return Account.from_key(index.to_bytes(32, "big"))


def members(count: int) -> tuple[StaticDirectory, dict[str, X25519PrivateKey]]:
    keys = {account(i + 1).address: X25519PrivateKey.generate() for i in range(count)}
    return StaticDirectory({a: public_bytes(k) for a, k in keys.items()}), keys


def memory_store() -> FsspecStore:
    return FsspecStore(f"memory://envelope-{uuid.uuid4().hex}")


def opened(store: FsspecStore | HttpStore, model: str, address: str, key: X25519PrivateKey) -> bytes:
    return b"".join(unseal(store, model, address, key))


@pytest.mark.parametrize("count", [1, 2, 7, 50])
def test_every_recipient_opens_the_model(count: int) -> None:
    directory, keys = members(count)
    store = memory_store()

    model = seal(store, [PLAINTEXT[:100], PLAINTEXT[100:]], recipients_of(directory), chunk_size=1024)

    assert store.get(model)[:4] == b"TCLV"
    assert set(load_keyring(store, model).wraps) == set(keys)
    for address, key in keys.items():
        assert opened(store, model, address, key) == PLAINTEXT


def test_non_recipient_is_refused() -> None:
    directory, _ = members(2)
    store = memory_store()
    model = seal(store, [PLAINTEXT], recipients_of(directory))

    with pytest.raises(AccessDenied, match=f"{account(9).address} is not a recipient of model {model}"):
        opened(store, model, account(9).address, X25519PrivateKey.generate())


def test_wrong_key_is_refused() -> None:
    directory, keys = members(2)
    store = memory_store()
    model = seal(store, [PLAINTEXT], recipients_of(directory))
    first, second = list(keys)

    with pytest.raises(AuthError, match="wrong key"):
        opened(store, model, first, keys[second])


def test_wrap_of_another_model_is_refused() -> None:
    key = X25519PrivateKey.generate()
    wrap = wrap_key(os.urandom(32), public_bytes(key), "aa" * 32)

    with pytest.raises(AuthError, match=f"does not open for model {'bb' * 32}"):
        unwrap_key(wrap, key, "bb" * 32)


def test_keyring_of_another_model_is_refused() -> None:
    store = memory_store()
    directory, _ = members(1)
    model = seal(store, [PLAINTEXT], recipients_of(directory))
    other = "cc" * 32
    store.write_keyring(model, Keyring(other).to_bytes())

    with pytest.raises(IntegrityError, match=f"declares model {other}"):
        load_keyring(store, model)


def test_sealing_for_nobody_is_refused() -> None:
    with pytest.raises(AccessDenied, match="no recipient"):
        seal(memory_store(), [PLAINTEXT], {})


def test_conflicting_wrap_is_refused() -> None:
    store = memory_store()
    directory, keys = members(1)
    model = seal(store, [PLAINTEXT], recipients_of(directory))
    address = next(iter(keys))
    forged = Keyring(model, {address: wrap_key(os.urandom(32), public_bytes(keys[address]), model)})

    with pytest.raises(ConflictError, match=address):
        add_wraps(store, forged)


def test_late_member_is_granted_without_changing_the_hash() -> None:
    directory, keys = members(3)
    store = memory_store()
    model = seal(store, [PLAINTEXT], recipients_of(directory))
    before = store.get(model)
    late, late_key = account(40).address, X25519PrivateKey.generate()
    with pytest.raises(AccessDenied):
        opened(store, model, late, late_key)
    granter = next(iter(keys))

    grant(store, model, granter, keys[granter], {late: public_bytes(late_key)})

    assert store.get(model) == before
    assert opened(store, model, late, late_key) == PLAINTEXT
    assert opened(store, model, granter, keys[granter]) == PLAINTEXT


def test_envelope_over_the_vault_service(live_vault: LiveVault) -> None:
    keys = {account(1).address: X25519PrivateKey.generate(), account(2).address: X25519PrivateKey.generate()}
    live_vault.directory.add(account(3).address)
    first, second = (HttpStore(live_vault.url, account(i).key) for i in (1, 2))
    late = HttpStore(live_vault.url, account(3).key)
    late_key = X25519PrivateKey.generate()

    model = seal(first, [PLAINTEXT], {a: public_bytes(k) for a, k in keys.items()})
    grant(
        second,
        model,
        account(2).address,
        keys[account(2).address],
        {account(3).address: public_bytes(late_key)},
    )

    assert opened(late, model, account(3).address, late_key) == PLAINTEXT
    assert opened(first, model, account(1).address, keys[account(1).address]) == PLAINTEXT
    for client in (first, second, late):
        client.close()


def test_conflicting_wrap_over_http_is_409(live_vault: LiveVault) -> None:
    client = HttpStore(live_vault.url, account(1).key)
    key = X25519PrivateKey.generate()
    model = seal(client, [PLAINTEXT], {account(1).address: public_bytes(key)})
    forged = Keyring(model, {account(1).address: wrap_key(os.urandom(32), public_bytes(key), model)})

    with pytest.raises(ConflictError, match=account(1).address):
        client.write_keyring(model, forged.to_bytes())
    assert opened(client, model, account(1).address, key) == PLAINTEXT
    client.close()
