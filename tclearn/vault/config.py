"""Vault service settings: `TCLEARN_VAULT_*` environment variables over an optional TOML file (`--config`).

store       = "file://./vault-data/store"         # fsspec URL of the blob store ("s3://bucket/prefix")
database    = "sqlite:///./vault-data/access.db"  # SQLAlchemy URL of the access log
deployment  = "deployment.json"                   # members are read from the Coalition contract
public_reads = false                              # variant A: unsigned GET/HEAD allowed
public_url  = "https://vault.example.org"         # the URL clients sign requests for (default http://host:port)
auditors    = ["0xAuditor..."]                    # may read blobs and, alone, the access log
replay_store = "postgresql://..."                 # seen nonces shared by replicas (default: this process)
[storage_options]                                 # passed to the store's filesystem (s3fs for s3://)
endpoint_url = "http://127.0.0.1:9000"            # an S3-compatible server; TCLEARN_VAULT_STORAGE_OPTIONS='{...}'
[server]
port = 8700                                       # TCLEARN_VAULT_SERVER__PORT overrides it
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from tclearn.config import Address, ServerSection, ServiceSettings
from tclearn.vault.store import DEFAULT_MAX_BYTES


class VaultSettings(ServiceSettings):
    """Where blobs and the access log live, and who may read."""

    model_config = SettingsConfigDict(env_prefix="TCLEARN_VAULT_")

    store: str = Field(default="file://./vault-data/store", description="fsspec URL of the blob store")
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="options of the store's filesystem, e.g. S3 endpoint_url, key, secret, client_kwargs",
    )
    database: str = Field(default="sqlite:///./vault-data/access.db", description="SQLAlchemy URL of the access log")
    max_bytes: int = Field(default=DEFAULT_MAX_BYTES, gt=0, description="largest blob accepted, in bytes")
    public_reads: bool = Field(default=False, description="variant A: unsigned GET/HEAD allowed")
    deployment: str | None = Field(
        default=None, description="deployment file: members are read from the Coalition contract"
    )
    members: str | None = Field(default=None, description="JSON member file (tests, no chain)")
    max_skew_s: int = Field(default=300, gt=0, description="largest accepted clock difference of a signed request")
    public_url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="the URL clients reach the vault at, which signed requests name (default: http://host:port)",
    )
    auditors: list[Address] = Field(
        default=[], description="auditor addresses: they may read blobs and, alone, the access log"
    )
    replay_store: str | None = Field(
        default=None, description="SQLAlchemy URL of the seen-nonce table replicas share (default: in memory)"
    )
    server: ServerSection = Field(default=ServerSection(port=8700), description="where the service listens")
