"""`tclearn account`: create and import signing keys as encrypted keystores."""

from __future__ import annotations

from pathlib import Path

import typer

from tclearn.cli.common import console

app = typer.Typer(help="Signing accounts (encrypted keystores).", no_args_is_help=True)


@app.command("new")
def new(keystore: Path = typer.Argument(..., help="Where to write the new keystore.")) -> None:
    """Create a fresh account; the password comes from TCLEARN_KEYSTORE_PASSWORD or a prompt."""
    from tclearn.ledger.accounts import keystore_password, new_account, save_keystore

    account = new_account()
    save_keystore(account, keystore, keystore_password(confirm=True))
    console.print(f"{account.address} -> {keystore}")


@app.command("import")
def import_key(
    keystore: Path = typer.Argument(..., help="Where to write the keystore."),
    dev_account: int | None = typer.Option(None, "--dev-account", help="Import funded dev account N."),
    key_env: str | None = typer.Option(None, "--key-env", help="Read the private key from this env variable."),
) -> None:
    """Wrap an existing private key (or a dev account) into an encrypted keystore."""
    import os

    from tclearn.errors import ConfigError
    from tclearn.ledger.accounts import account_from_key, dev_accounts, keystore_password, save_keystore

    if (dev_account is None) == (key_env is None):
        raise ConfigError("give exactly one of --dev-account N or --key-env NAME")
    if key_env is not None:
        if key_env not in os.environ:
            raise ConfigError(f"environment variable {key_env} is not set")
        account = account_from_key(os.environ[key_env])
    else:
        assert dev_account is not None
        account = dev_accounts(dev_account + 1)[dev_account]
    save_keystore(account, keystore, keystore_password(confirm=True))
    console.print(f"{account.address} -> {keystore}")
