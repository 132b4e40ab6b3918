"""One hospital's site: the config file its services read (`member.toml`, `node.toml`) and the coalition
context opened from it.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tclearn.coalition.context import Coalition, Hospital
from tclearn.coalition.encrypted_setup import encrypted_coalition, find_supervisor, load_table, model_spec
from tclearn.coalition.policy import AcceptancePolicy
from tclearn.config import _load
from tclearn.errors import ConfigError
from tclearn.he.client import HttpSupervisorClient
from tclearn.learning.attacks import Attack
from tclearn.learning.data import ImageData, load_segmentation
from tclearn.learning.manifest import fingerprint
from tclearn.learning.models import ModelConfig
from tclearn.learning.train import TrainConfig
from tclearn.ledger.accounts import choose_signer
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.deployment import open_deployment
from tclearn.ledger.directory import ChainDirectory
from tclearn.types import Variant
from tclearn.vault.http import HttpStore
from tclearn.vault.keys import key_password, load_key

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


@dataclass
class Site:
    """A hospital's view of its coalition: the context every duty takes, and its own place in it."""

    config: SiteConfig
    coalition: Coalition
    hospital: Hospital

    @property
    def client(self) -> LedgerClient:
        return self.coalition.client

    def close(self) -> None:
        store = self.coalition.store
        if isinstance(store, HttpStore):
            store.close()
        if self.hospital.he is not None and isinstance(self.hospital.he.supervisor, HttpSupervisorClient):
            self.hospital.he.supervisor.close()


def _x25519(config: SiteConfig, variant: Variant) -> X25519PrivateKey:
    if config.encryption_key is not None:
        return load_key(config.encryption_key, key_password())
    if variant is Variant.B:
        raise ConfigError(f"site {config.name!r}: variant B needs encryption_key (an X25519 key file)")
    return X25519PrivateKey.generate()  # variant A: models are stored in clear; this key opens nothing


def _encrypted_tables(config: SiteConfig) -> tuple[ImageData, ImageData, ImageData]:
    """Variant C: G and the hospital's train and test tables, checked; errors name the field."""
    if not config.global_test.is_file():
        raise ConfigError(f"site {config.name!r}: global_test must be G's CSV file in variant C; {config.global_test}")
    missing = [name for name in ("train.csv", "test.csv") if not (config.data / name).is_file()]
    if missing:
        raise ConfigError(
            f"site {config.name!r}: data must be a folder holding train.csv and test.csv in variant C; "
            f"{config.data} lacks {', '.join(missing)}"
        )
    global_test = load_table(config.global_test, config.label_column)
    columns = model_spec(global_test).features
    train, test = (load_table(config.data / f"{s}.csv", config.label_column, columns) for s in ("train", "test"))
    return global_test, train, test


def open_site(config: SiteConfig) -> Site:
    """Connects to the coalition as this hospital and loads its data; errors name the file or field."""
    _, client = open_deployment(config.deployment, config.chain_url)
    variant = client.variant()
    if variant is Variant.C and config.supervisor_url is None:
        raise ConfigError(f"site {config.name!r}: variant C needs supervisor_url (the supervisor service)")
    if variant is not Variant.C and config.supervisor_url is not None:
        raise ConfigError(f"site {config.name!r}: supervisor_url is for variant C; this coalition is {variant.name}")
    if variant is Variant.C:
        global_test, train, test = _encrypted_tables(config)
        manifest = fingerprint(config.data / "train.csv")
    else:
        global_test = load_segmentation(config.global_test)
        train, test = load_segmentation(config.data / "train"), load_segmentation(config.data / "test")
        manifest = fingerprint(config.data / "train")
    account = choose_signer(client.chain.chain_id, client.chain.embedded, config.keystore, config.dev_account)
    hospital = Hospital(config.name, account, _x25519(config, variant), train, test, manifest, config.attack)
    model = ModelConfig(arch=config.model.arch, **config.model.model_dump(exclude={"arch"}))  # type: ignore[arg-type]
    training = TrainConfig(**config.training.model_dump())
    policy = AcceptancePolicy(**config.policy.model_dump())
    store = HttpStore(config.vault_url, account.key)
    if variant is Variant.C:
        assert config.supervisor_url is not None
        supervisor = HttpSupervisorClient(config.supervisor_url, account.key)
        try:
            coalition = encrypted_coalition(
                client,
                store,
                find_supervisor(client),
                global_test,
                [(hospital, supervisor)],
                model=model,
                training=training,
                policy=policy,
                steps=config.he.steps,
                lr=config.he.lr,
                directory_ttl=30.0,
            )
        except BaseException:
            store.close()
            supervisor.close()
            raise
        return Site(config, coalition, coalition.hospitals[0])
    coalition = Coalition(
        client,
        store,
        variant,
        model,
        training,
        policy,
        global_test,
        [hospital],
        directory=ChainDirectory(client, ttl=30.0),
    )
    return Site(config, coalition, hospital)
