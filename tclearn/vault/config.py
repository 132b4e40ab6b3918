"""Vault service settings, read from `TCLEARN_VAULT_*` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tclearn.vault.store import DEFAULT_MAX_BYTES


class VaultSettings(BaseSettings):
    """Where blobs and the access log live, and who may read."""

    model_config = SettingsConfigDict(env_prefix="TCLEARN_VAULT_")

    store: str = Field(default="file://./vault-data/store", description="fsspec URL of the blob store")
    database: str = Field(default="sqlite:///./vault-data/access.db", description="SQLAlchemy URL of the access log")
    max_bytes: int = Field(default=DEFAULT_MAX_BYTES, gt=0, description="largest blob accepted, in bytes")
    public_reads: bool = Field(default=False, description="variant A: unsigned GET/HEAD allowed")
    deployment: str | None = Field(
        default=None, description="deployment file: members are read from the Coalition contract"
    )
    members: str | None = Field(default=None, description="JSON member file (tests, no chain)")
    max_skew_s: int = Field(default=300, gt=0, description="largest accepted clock difference of a signed request")
