"""One hospital's site config: the file its services read (`member.toml`, `node.toml`).

A site is one member of a deployed coalition, in its own process: its chain account, its X25519 key (variant
B), its local data folder (`train/` and `test/`, the layout of `tclearn data synth`), the global test set G,
the vault, and the coalition's model, training and acceptance rules. In variant C (read from the chain) the
data are feature tables (`data/train.csv`, `data/test.csv`, G a CSV file), the site holds the public CKKS
context the supervisor registered on chain, and reaches the supervisor service at `supervisor_url` with
requests signed as its own account. The member API and the node daemon both
call `open_site`, so they see the same hospital the same way.

Relative paths in the file are relative to the file's folder. Secrets never sit in the file: the keystore
password comes from `TCLEARN_KEYSTORE_PASSWORD`, the X25519 key-file password from `TCLEARN_KEY_PASSWORD`.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tclearn.coalition.policy import AcceptancePolicy
from tclearn.config import _load
from tclearn.learning.attacks import Attack

MEMBER_CONFIG_ENV = "TCLEARN_MEMBER_CONFIG"  # the member service's config path (`tclearn member serve` sets it)


class ModelSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    arch: str = "unet"
    spatial_dims: int = 2
    in_channels: int = 1
    out_channels: int = 1
    options: dict[str, Any] = {}


class TrainingSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(default=8, ge=1)
    batch_size: int = Field(default=8, ge=1)
    lr: float = Field(default=0.01, gt=0)
    min_batch_size: int = Field(default=4, ge=1)
    seed: int = 0


class PolicySection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tolerance_global: float = Field(default=AcceptancePolicy.tolerance_global, ge=0, le=1)
    tolerance_local: float = Field(default=AcceptancePolicy.tolerance_local, ge=0, le=1)


class HESection(BaseModel):
    """Variant C: how each encrypted increment is trained (full-batch gradient steps)."""

    model_config = ConfigDict(extra="forbid")
    steps: int = Field(default=3, ge=1)
    lr: float = Field(default=1.0, gt=0)


class ServerSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int = Field(default=8700, ge=0, le=65535)


class SiteConfig(BaseModel):
    """`member.toml` / `node.toml`: one hospital's services."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    deployment: Path
    chain_url: str | None = None  # overrides the deployment file's URL
    vault_url: str
    keystore: Path | None = None
    dev_account: int | None = Field(default=None, ge=0, lt=100)  # local dev chains only
    encryption_key: Path | None = None  # X25519 key file; required in variant B
    data: Path  # the hospital's folder: train/ and test/ (images/ and masks/ in each); variant C: train.csv, test.csv
    global_test: Path  # G: images/ and masks/; variant C: a CSV file
    supervisor_url: str | None = Field(default=None, pattern=r"^https?://")  # variant C: the supervisor service
    label_column: str = Field(default="label", min_length=1)  # variant C: the CSV files' label column
    state: str = "sqlite:///state.db"  # SQLAlchemy URL: event cursor, jobs, votes cast
    attack: Attack = Attack.NONE  # simulations only: makes this site a Byzantine member
    poll_interval: float = Field(default=1.0, gt=0)
    keeper_interval: float = Field(default=10.0, gt=0)  # node: how often deadlines are checked without events
    confirmations: int = Field(default=0, ge=0)
    operator_token_env: str = "TCLEARN_OPERATOR_TOKEN"
    model: ModelSection = ModelSection()
    training: TrainingSection = TrainingSection()
    policy: PolicySection = PolicySection()
    he: HESection = HESection()
    server: ServerSection = ServerSection()

    @model_validator(mode="after")
    def _one_signer(self) -> SiteConfig:
        if (self.keystore is None) == (self.dev_account is None):
            raise ValueError("give exactly one of keystore (a file) or dev_account (a local dev chain's index)")
        return self

    def resolved(self, folder: Path) -> SiteConfig:
        """The config with its relative paths (and a relative SQLite file) taken from `folder`."""
        paths = {
            name: folder / value
            for name in ("deployment", "keystore", "encryption_key", "data", "global_test")
            if isinstance(value := getattr(self, name), Path) and not value.is_absolute()
        }
        state = self.state
        prefix = "sqlite:///"
        if state.startswith(prefix) and not state.startswith(prefix + "/") and ":memory:" not in state:
            state = prefix + str(folder / state.removeprefix(prefix))
        return self.model_copy(update={**paths, "state": state})


def load_site_config(path: Path) -> SiteConfig:
    return _load(path, SiteConfig, tomllib.loads).resolved(path.parent.resolve())
