"""`tclearn export` and `tclearn trace`: a committed model taken out with this hospital's fingerprint, recorded on
chain; a model found elsewhere traced back to the export it came from (docs/traceability.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from tclearn.cli.common import DeploymentOpt, DevAccountOpt, KeystoreOpt, console, open_as, user_errors

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from tclearn.coalition.trace import StateDict, Trace
    from tclearn.learning.watermark import MarkKey
    from tclearn.ledger.ledger import Ledger
    from tclearn.vault.store import BlobStore

ConfigOpt = typer.Option(
    Path("member.toml"), "--config", "-c", help="The site's member.toml; TCLEARN_MEMBER_* variables override it."
)


def export(
    model_id: int = typer.Argument(..., min=0, help="The committed model to export (its id on chain)."),
    out: Path = typer.Option(..., "--out", "-o", help="The file to write (safetensors); its record goes to FILE.json."),
    config: Path = ConfigOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the export's record as JSON."),
) -> None:
    """Export a committed model with this hospital's own fingerprint: the export is recorded on chain (signed by
    the hospital) before the file is written; the fingerprint key is sealed in the vault for the tracers."""
    from tclearn.site.config import MemberSettings, load_site_config
    from tclearn.site.exports import export_to
    from tclearn.site.open import open_site

    with user_errors():
        site = open_site(load_site_config(config, MemberSettings))
        try:
            done, path = export_to(site, model_id, out)
        finally:
            site.close()
    record = json.loads(path.with_name(path.name + ".json").read_text())
    if as_json:
        typer.echo(json.dumps(record, indent=2, sort_keys=True))
        return
    console.print(
        f"export {done.id} of model {done.model_id} recorded on chain (tx {done.tx_hash}, block {done.block})"
    )
    for s in done.scores:
        console.print(f"  {s.data} ({s.samples} samples): committed {s.committed:.4f}, exported {s.exported:.4f}")
    console.print(f"fingerprint commitment {done.fingerprint}, key blob {done.key_blob}")
    console.print(f"model: {path}  record: {path.name}.json")


def trace(
    suspect: Path = typer.Argument(..., help="The model file found (.safetensors, or a torch state dict .pt)."),
    config: Path = ConfigOpt,
    vault: str | None = typer.Option(
        None, "--vault", help="Trace without a site (an auditor): the vault's URL; with -d, --key and a signer."
    ),
    deployment: Path = DeploymentOpt,
    key: Path | None = typer.Option(None, "--key", help="Without a site: your X25519 key file (as registered)."),
    keystore: Path | None = KeystoreOpt,
    dev_account: int | None = DevAccountOpt,
    as_json: bool = typer.Option(False, "--json", help="Print every reading as JSON."),
) -> None:
    """Measure a model against the fingerprint of every export on chain and name the exporter(s) it matches, at a
    chance of a false accusation of at most 1e-6: as the hospital of a member.toml, or (--vault) as any account
    the keys were sealed for, e.g. an auditor. Exit status 0 whether or not anyone is accused."""
    from tclearn.learning.modelfile import read_weights

    with user_errors():
        weights = read_weights(suspect)
        if vault is None:
            found, names = _trace_as_site(config, weights)
        else:
            found, names = _trace_as_account(vault, deployment, key, keystore, dev_account, weights)
    if as_json:
        typer.echo(json.dumps({"suspect": str(suspect), **found.summary()}, indent=2, sort_keys=True))
        return
    _show(suspect, found, names)


def _trace_as_site(config: Path, weights: StateDict) -> tuple[Trace, dict[str, str]]:
    """The trace as the hospital of `config`, with the coalition's watermark read where the site has it."""
    from tclearn.coalition.trace import trace as run
    from tclearn.site.config import MemberSettings, load_site_config
    from tclearn.site.open import open_site

    site = open_site(load_site_config(config, MemberSettings))
    try:
        co, me = site.coalition, site.hospital
        return run(co.client, co.store, me.address, me.key, weights, co.watermark), _names(co.client)
    finally:
        site.close()


def _trace_as_account(
    vault: str, deployment: Path, key: Path | None, keystore: Path | None, dev_account: int | None, weights: StateDict
) -> tuple[Trace, dict[str, str]]:
    """The trace as the account that signs (its X25519 key file `key`), reading the vault at `vault`."""
    from tclearn.coalition.trace import trace as run
    from tclearn.errors import ConfigError
    from tclearn.vault.audience import CoalitionId
    from tclearn.vault.http import HttpStore
    from tclearn.vault.keys import key_password, load_key

    if key is None:
        raise ConfigError("--vault traces as an account: give its X25519 key file with --key")
    client, account = open_as(deployment, None, keystore, dev_account)
    private = load_key(key, key_password())
    store = HttpStore(vault, account.key, coalition=CoalitionId.of_client(client))
    try:
        watermark = _coalition_key(client, store, account.address, private)
        return run(client, store, account.address, private, weights, watermark), _names(client)
    finally:
        store.close()


def _coalition_key(client: Ledger, store: BlobStore, reader: str, private: X25519PrivateKey) -> MarkKey | None:
    """The coalition's watermark key where its policy names one and this account can read it (in variant B it is
    sealed for the members: an auditor the founders did not grant it traces without it, and is told so)."""
    from tclearn.coalition.declared import declared_policy
    from tclearn.coalition.watermark import read_key
    from tclearn.errors import TclearnError
    from tclearn.types import Variant

    policy, _ = declared_policy(client, store)
    if policy.watermark is None:
        return None
    try:
        return read_key(store, policy.watermark, reader, private if client.variant() is Variant.B else None)
    except TclearnError as exc:
        typer.echo(f"coalition watermark not read: {exc}", err=True)  # stdout may be JSON
        return None


def _names(client: Ledger) -> dict[str, str]:
    return {m.address: m.name for m in client.members()}


def _show(suspect: Path, found: Trace, names: dict[str, str]) -> None:
    mark = found.watermark
    if mark is not None:
        console.print(f"coalition watermark: {mark.errors} of {mark.bits} bits wrong (p {mark.p_value:.2g})")
    if not found.readings:
        console.print(f"{suspect}: no export is recorded on chain; nobody to trace it to")
        return
    console.print(
        f"{suspect}: tried the fingerprints of {len(found.readings)} export(s); chance of accusing anyone for a "
        f"model that carries none: at most {found.bound:.2g}"
    )
    for r in found.readings:
        e, got = r.export, r.reading
        console.print(
            f"  export {e.id} (model {e.model_id}, {names.get(e.member, e.member)}): {got.errors} of {got.bits} bits "
            f"wrong (BER {got.ber:.3f}, p {r.p_value:.2g}; match at <= {r.threshold}, inverted at >= "
            f"{got.bits - r.threshold})" + (" MATCH" if r.match else " INVERTED" if r.inverted else "")
        )
    if not found.accused:
        console.print("nobody accused: no export's fingerprint reads within its threshold, nor inverted")
    for r in found.accused:
        how = " — its fingerprint read inverted: removed by a holder of its key" if r.inverted else ""
        console.print(
            f"accused: {names.get(r.export.member, r.export.member)} ({r.export.member}), export {r.export.id} of "
            f"model {r.export.model_id} (p {r.p_value:.2g}){how}"
        )
