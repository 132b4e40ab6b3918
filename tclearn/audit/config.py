"""Auditor service settings: `TCLEARN_AUDITOR_*` environment variables over an optional TOML file.

deployment    = "deployment.json"                # the coalition to audit (required)
chain         = "http://127.0.0.1:8545"          # JSON-RPC URL overriding the deployment's
vault         = "https://vault:8700"             # the vault service, or file:///srv/vault, or a folder
keystore      = "/etc/tclearn/auditor.json"      # signs vault reads (password: TCLEARN_KEYSTORE_PASSWORD)
access_db     = "sqlite:////srv/vault/access.db" # or read a local vault's access log from its database
state         = "sqlite:///./auditor-data/state.db"  # event cursor and the events it has read
confirmations = 0                                # only blocks this deep are read
token_sha256  = "9f86d0..."                      # sha256 of the auditor token (`tclearn auditor token`)
[server]
port = 8800                                      # TCLEARN_AUDITOR_SERVER__PORT overrides it
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from tclearn.config import ServerSection, ServiceSettings
from tclearn.errors import ConfigError, NotFoundError
from tclearn.ledger.accounts import keystore_password, load_keystore
from tclearn.state.db import Database
from tclearn.vault.access_log import access_entries
from tclearn.vault.audience import CoalitionId
from tclearn.vault.http import HttpStore
from tclearn.vault.store import BlobStore, FsspecStore

AccessLog = Callable[[str | None, str | None, int], list[dict[str, Any]]]  # (account, sha256, limit) -> entries


class AuditorSettings(ServiceSettings):
    """What the auditor watches (a deployment and its vault) and where it keeps its own state."""

    model_config = SettingsConfigDict(env_prefix="TCLEARN_AUDITOR_")

    deployment: Path = Field(description="deployment file of the coalition")
    chain: str | None = Field(default=None, description="JSON-RPC URL overriding the deployment file's")
    vault: str = Field(description="vault service URL (http/https), fsspec URL (file://...) or local folder")
    keystore: Path | None = Field(default=None, description="keystore signing vault reads and access-log reads")
    access_db: str | None = Field(default=None, description="SQLAlchemy URL of a local vault's access log")
    state: str = Field(default="sqlite:///./auditor-data/state.db", description="SQLAlchemy URL of the event cursor")
    confirmations: int = Field(default=0, ge=0, description="blocks an event must be buried under before it is read")
    token_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="sha256 (hex) of the bearer token the API answers (`tclearn auditor token`); none: nobody",
    )
    server: ServerSection = Field(default=ServerSection(port=8800), description="where the service listens")


def is_http(vault: str) -> bool:
    return vault.startswith(("http://", "https://"))


def open_store(settings: AuditorSettings) -> BlobStore:
    """The vault the auditor re-hashes blobs from: the service (signed if a keystore is given) or a local store."""
    if is_http(settings.vault):
        key = load_keystore(settings.keystore, keystore_password(prompt=False)).key if settings.keystore else None
        return HttpStore(settings.vault, key, coalition=CoalitionId.of_deployment(settings.deployment))
    if settings.keystore is not None:
        raise ConfigError(f"keystore {settings.keystore} is for a vault service; vault {settings.vault} is local")
    return FsspecStore(settings.vault if "://" in settings.vault else f"file://{Path(settings.vault).resolve()}")


def open_access_log(settings: AuditorSettings, store: BlobStore) -> AccessLog | None:
    """Where the vault's access log is read: its database if given, else the service (signed reads only)."""
    if settings.access_db is not None:
        db = Database(settings.access_db, migrate=False)  # the vault's: it alone migrates its schema
        return lambda account, sha256, limit: [
            e.to_json() for e in access_entries(db, account=account, sha256=sha256, limit=limit)
        ]
    if isinstance(store, HttpStore) and settings.keystore is not None:
        return lambda account, sha256, limit: store.access_log(account, sha256, limit)
    return None


def no_access_log() -> NotFoundError:
    return NotFoundError(
        "this auditor has no access log to show: give it the vault service's URL and a keystore "
        "(access_log is read with signed requests), or the vault's access database (access_db)"
    )
