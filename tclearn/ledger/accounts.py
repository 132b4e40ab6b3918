"""Accounts that sign their own raw transactions: dev keys, encrypted keystores, and a nonce-safe sender.

Nothing relies on a node's unlocked accounts, so any EVM chain works. Keystores are the standard
encrypted JSON, written with scrypt by `tclearn.keyfile` (tclearn's one at-rest key format); the password
comes from the environment (`TCLEARN_KEYSTORE_PASSWORD`) or a prompt, never from a command line argument.
"""

from __future__ import annotations

import os
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from tclearn import keyfile
from tclearn.errors import ConfigError

DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEV_HD_PATH = "m/44'/60'/0'/0"
PASSWORD_ENV = "TCLEARN_KEYSTORE_PASSWORD"
DEV_CHAIN_IDS = {31337, 1337}  # Anvil, Ganache
WHAT = "keystore"

Account.enable_unaudited_hdwallet_features()


def dev_accounts(count: int = 10, mnemonic: str = DEV_MNEMONIC) -> list[LocalAccount]:
    """The funded development accounts every local chain (embedded, Anvil, Ganache) starts with."""
    return [Account.from_mnemonic(mnemonic, account_path=f"{DEV_HD_PATH}/{i}") for i in range(count)]


def new_account() -> LocalAccount:
    return Account.create()


def account_from_key(private_key: str) -> LocalAccount:
    try:
        return Account.from_key(private_key)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"not a valid private key: {exc}") from None


def save_keystore(account: LocalAccount, path: Path, password: str) -> Path:
    """Writes `account` as an encrypted keystore (scrypt), atomically, readable by its owner only."""
    if not password:
        raise ConfigError("a keystore password must not be empty")
    keyfile.write_key(path, bytes(account.key), password, None, WHAT)
    return path


def load_keystore(path: Path, password: str) -> LocalAccount:
    """The account in a keystore file; `AuthError` on a wrong password, `ConfigError` on a file that is not one."""
    return Account.from_key(keyfile.read_key(path, password, None, WHAT))


def keystore_password(prompt: bool = True, confirm: bool = False) -> str:
    """The keystore password from `TCLEARN_KEYSTORE_PASSWORD`, else asked on the terminal."""
    password = os.environ.get(PASSWORD_ENV)
    if password is not None:
        return password
    if not prompt:
        raise ConfigError(f"set {PASSWORD_ENV} to the keystore password")
    import typer

    return str(typer.prompt("Keystore password", hide_input=True, confirmation_prompt=confirm))


def choose_signer(chain_id: int, embedded: bool, keystore: Path | None, dev_account: int | None) -> LocalAccount:
    """The account that signs: a keystore (password from the environment or a prompt) or, on a local dev
    chain only, funded dev account `dev_account`."""
    if (keystore is None) == (dev_account is None):
        raise ConfigError("give exactly one of a keystore file or a dev account number")
    if keystore is not None:
        return load_keystore(keystore, keystore_password())
    assert dev_account is not None
    if chain_id not in DEV_CHAIN_IDS and not embedded:
        raise ConfigError(f"dev accounts are only for local dev chains; chain {chain_id} needs a keystore")
    if not 0 <= dev_account < 100:
        raise ConfigError(f"the dev account number must be between 0 and 99, got {dev_account}")
    return dev_accounts(dev_account + 1)[dev_account]
