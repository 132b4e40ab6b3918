"""`tclearn watermark key` draws a coalition's watermark key (for a coalition founded by hand: `coalition deploy`);
`tclearn watermark verify`: does a model file carry the coalition's watermark?

The key is read from the coalition's vault (unsealed with the member's X25519 key in variant B) and checked against
the commitment in the acceptance policy the chain declares. Exit status: 0 the model carries the watermark, 1 it does
not, 2 the check could not be made (a missing or corrupt file, a model of another architecture, a key that is not
the committed one, a coalition without a watermark) — as `grep` says found, not found, trouble.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from pathlib import Path

import typer

from tclearn.cli.common import DeploymentOpt, DevAccountOpt, KeystoreOpt, UrlOpt, open_deployment, user_errors
from tclearn.errors import ConfigError

app = typer.Typer(help="The coalition's watermark: draw its key, check that a model carries it.", no_args_is_help=True)

CARRIES, LACKS, TROUBLE = 0, 1, 2


def trouble() -> AbstractContextManager[None]:
    """A `TclearnError` becomes one line on stderr and exit status 2 (1 means: the mark is not there)."""
    return user_errors(TROUBLE)


@app.command("key")
def key(
    genesis: Path = typer.Argument(..., help="The coalition's genesis model file (safetensors or torch .pt)."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the key record (readable by you alone)."),
    stamped: Path | None = typer.Option(
        None,
        "--stamped",
        help="Also write GENESIS stamped with the key here (safetensors): the genesis to found the coalition with, "
        "already carrying the mark (as `found` does).",
    ),
) -> None:
    """Draw a coalition watermark key for models shaped like GENESIS and write its record; prints its sha256 (the
    policy's watermark.key). Store the record in the vault (`tclearn vault put`, or `tclearn vault seal` for the
    founders in variant B; the hash printed is watermark.blob), then delete OUT: it holds the secret in clear."""
    import os

    from tclearn.coalition.exports import write_bytes_atomically
    from tclearn.learning.modelfile import read_weights
    from tclearn.learning.watermark import new_key, stamp
    from tclearn.vault.codec import encode_model

    with trouble():
        for target in (out, stamped):
            if target is not None and target.exists():
                raise ConfigError(f"{target} already exists; move it away or choose another name")
        weights = read_weights(genesis)
        record = new_key(weights, "coalition")
        if stamped is not None:
            write_bytes_atomically(stamped, encode_model(stamp(weights, record)))
        descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(record.encode())
    typer.echo(record.sha256())


@app.command("verify")
def verify(
    model: Path = typer.Argument(..., help="The model file: safetensors (an export, a vault model) or a torch .pt."),
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        help="A site's member.toml: its deployment, chain, vault, account and X25519 key stand for the options below.",
    ),
    deployment: Path = DeploymentOpt,
    url: str | None = UrlOpt,
    vault: str | None = typer.Option(
        None, "--vault", envvar="TCLEARN_VAULT_URL", help="The coalition's vault: http(s)://host, or file:///path."
    ),
    keystore: Path | None = KeystoreOpt,
    dev_account: int | None = DevAccountOpt,
    encryption_key: Path | None = typer.Option(
        None,
        "--encryption-key",
        help="This member's X25519 key file (variant B: the key is sealed for the members); its password from "
        "TCLEARN_KEY_PASSWORD or a prompt.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the reading as JSON."),
) -> None:
    """Read MODEL against the watermark key the coalition's policy on chain commits to: bits read wrong, bit error
    rate, its p-value under chance, the policy's max_ber and the verdict (exit 0 carries, 1 does not, 2 error)."""
    from tclearn.cli.audit import open_vault
    from tclearn.cli.common import signer
    from tclearn.coalition.declared import declared_policy
    from tclearn.coalition.watermark import verify as read
    from tclearn.learning.modelfile import read_weights
    from tclearn.types import Variant
    from tclearn.vault.keys import key_password, load_key

    with trouble():
        if config is not None:
            from tclearn.site.config import MemberSettings, load_site_config

            site = load_site_config(config, MemberSettings)
            deployment, url, vault = site.deployment, site.chain_url, site.vault_url
            keystore, dev_account, encryption_key = site.keystore, site.dev_account, site.encryption_key
        if vault is None:
            raise ConfigError("give the coalition's vault (--vault URL) or a site's member.toml (--config)")
        weights = read_weights(model)
        deployed, client = open_deployment(deployment, url)
        account = None if keystore is None and dev_account is None else signer(client.chain, keystore, dev_account)
        sealed = client.variant() is Variant.B
        if sealed and (account is None or encryption_key is None):
            raise ConfigError(
                "this coalition (variant B) seals its watermark key for its members: give --encryption-key and the "
                "member's account (--keystore or --dev-account)"
            )
        store = open_vault(vault, None if account is None else account.key.hex(), deployed)
        private = load_key(encryption_key, key_password()) if sealed and encryption_key is not None else None
        policy, _ = declared_policy(client, store)
        found = read(store, policy, weights, "" if account is None else account.address, private)
    if as_json:
        typer.echo(json.dumps({"model": str(model), **found.to_json()}, indent=2, sort_keys=True))
    else:
        r = found.reading
        typer.echo(  # one line, unwrapped: scripts read it
            f"{model}: {r.errors} of {r.bits} bits read wrong (BER {r.ber:.3f}, p-value under chance {r.p_value:.3g}; "
            f"the policy's max_ber {found.max_ber:g}): {found.verdict}"
        )
    raise typer.Exit(CARRIES if found.carries else LACKS)
