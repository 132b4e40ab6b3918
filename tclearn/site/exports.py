"""A hospital's exports from its site: the fingerprinted copy of a committed model written where its operator
asks (`tclearn export`) or under the site's `exports` folder (the member API), and the site's exports on chain.

The target is checked before any work (a folder that cannot be written refuses the export before it is made); the
file is written only once the chain holds the export's record (`tclearn.coalition.exports`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from tclearn.coalition.exports import Export, export_model, json_path, write_export
from tclearn.errors import ConfigError, NotFoundError
from tclearn.site.open import Site


def check_target(path: Path) -> None:
    """`path` can receive an export file: not a folder, its folder writable (created if missing)."""
    if path.is_dir():
        raise ConfigError(
            f"the export file {str(path)!r} is a folder; name a file, e.g. {str(path / 'model.safetensors')!r}"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the folder {str(path.parent)!r} for the export: {exc.strerror}") from None
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise ConfigError(f"the folder {str(path.parent)!r} is not writable by this user; export elsewhere")


def about(site: Site) -> dict[str, Any]:
    """What an export's JSON says of where it came from: the coalition (chain, contract), the site, the model."""
    backend = site.coalition.backend
    return {
        "chain_id": site.client.chain.chain_id,
        "contract": site.client.address,
        "site": site.config.name,
        "variant": backend.variant.name,
        "model": backend.describe().config,
    }


def export_to(site: Site, model_id: int, path: Path | None = None) -> tuple[Export, Path]:
    """This hospital exports committed model `model_id` into `path` (and `path`.json), by default into the site's
    `exports` folder as `export-<id>.safetensors`; see the module. Returns the export and its file."""
    check_target(path or site.config.exports / "export.safetensors")
    export = export_model(site.coalition, site.hospital, model_id)
    target = write_export(path or site_file(site, export.id), export, about(site))
    return export, target


def site_file(site: Site, export_id: int) -> Path:
    """Where the member API keeps export `export_id`'s file."""
    return site.config.exports / f"export-{export_id}.safetensors"


class Recorded(Protocol):
    """An export as the chain records it (`ledger.ExportRecord`, or `history.ModelExport` folded from the logs)."""

    @property
    def id(self) -> int: ...
    @property
    def model_id(self) -> int: ...
    @property
    def member(self) -> str: ...
    @property
    def fingerprint(self) -> bytes: ...
    @property
    def key_blob(self) -> bytes: ...
    @property
    def block(self) -> int: ...


def own(site: Site, records: Iterable[Recorded]) -> list[Recorded]:
    """This hospital's exports among `records` (every export on chain), in their order."""
    return [e for e in records if e.member.lower() == site.hospital.address.lower()]


def own_file(site: Site, export_id: int, records: Iterable[Recorded]) -> Path:
    """The file of this hospital's export `export_id` in its `exports` folder; `NotFoundError` otherwise."""
    path = site_file(site, export_id)
    if not any(e.id == export_id for e in own(site, records)) or not path.is_file():
        raise NotFoundError(f"this site holds no file of export {export_id}", export_id=export_id)
    return path


def listed(site: Site, records: Iterable[Recorded]) -> list[dict[str, Any]]:
    """This hospital's exports among `records`, each with its JSON where the site's `exports` folder holds its
    file (the chain's fields win over the file's)."""
    out = []
    for record in own(site, records):
        stored = json_path(site_file(site, record.id))
        shown = json.loads(stored.read_text()) if stored.is_file() else {}
        out.append(
            {
                **shown,
                "export_id": record.id,
                "model_id": record.model_id,
                "member": record.member,
                "fingerprint": record.fingerprint.hex(),
                "key_blob": record.key_blob.hex(),
                "block": record.block,
                "file": stored.is_file(),
            }
        )
    return out
