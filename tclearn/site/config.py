"""One hospital's site config: the file its services read (`member.toml`, `node.toml`).

A site is one member of a deployed coalition, in its own process: its chain account, its X25519 key (variant
B), its local data folder (`train/` and `test/`, the layout of `tclearn data synth`), the global test set G,
the vault, the coalition's model and this site's training, and the acceptance policy settings it expects (the
policy applied is always the one the coalition declared on chain). In variant C (read from the chain) the
data are feature tables (`data/train.csv`, `data/test.csv`, G a CSV file), the site holds the public CKKS
context the supervisor registered on chain, and reaches the supervisor service at `supervisor_url` with
requests signed as its own account. The member API and the node daemon both
call `open_site`, so they see the same hospital the same way.

The file is read by the one settings loader (`tclearn.config.load_settings`): the member service as
`MemberSettings` (`TCLEARN_MEMBER_*` variables override the file, e.g. `TCLEARN_MEMBER_TRAINING__EPOCHS=2`), the
node daemon as `NodeSettings` (`TCLEARN_NODE_*`). Relative paths are relative to the file's folder. Secrets never
sit in the file: the keystore password comes from `TCLEARN_KEYSTORE_PASSWORD`, the X25519 key-file password from
`TCLEARN_KEY_PASSWORD`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import SettingsConfigDict

from tclearn.coalition.policy import AcceptancePolicy
from tclearn.config import ServerSection, ServiceSettings, load_settings
from tclearn.errors import ConfigError
from tclearn.learning.attacks import Attack
from tclearn.learning.defaults import COALITION_TRAINING, ENCRYPTED_TRAINING
from tclearn.types import VoteMode

__all__ = ["MemberSettings", "NodeSettings", "ServerSection", "SiteConfig", "load_site_config", "site_from_env"]


class ModelSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    arch: str = "unet"
    spatial_dims: int = 2
    in_channels: int = 1
    out_channels: int = 1
    options: dict[str, Any] = {}
    multilabel: bool = False  # image classifiers: independent 0/1 labels (images/ + labels.csv folders)


class PrivacyTrainingSection(BaseModel):
    """DP-SGD for this site's increments (docs/privacy.md): the epsilon each increment may spend (the noise multiplier
    is found for it) or the noise multiplier itself; delta and the accountant are the coalition's (its policy)."""

    model_config = ConfigDict(extra="forbid")
    epsilon: float | None = Field(default=None, gt=0)
    noise_multiplier: float | None = Field(default=None, gt=0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    unit: Literal["sample", "patient"] = "sample"  # patient: train/patients.csv groups the images

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.epsilon is None) == (self.noise_multiplier is None):
            raise ValueError("give exactly one of epsilon (per increment) and noise_multiplier")
        return self


class TrainingSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(default=COALITION_TRAINING.epochs, ge=1)
    batch_size: int = Field(default=COALITION_TRAINING.batch_size, ge=1)
    lr: float = Field(default=COALITION_TRAINING.lr, gt=0)
    optimiser: Literal["adam", "adamw", "sgd"] = "adam"  # sgd: with momentum 0.9 (what DP-SGD wants)
    min_batch_size: int = Field(default=COALITION_TRAINING.min_batch_size, ge=1)
    seed: int = COALITION_TRAINING.seed
    loss: Literal["dice", "dice_ce", "ce"] | None = None  # None: dice_ce for segmentation, ce for classes
    augment: list[str] = []  # MONAI random transforms by name: flip, rotate90, rotate, intensity, noise, j2k:R
    patch: list[int] | None = None  # 3-D: train on random crops of this size, evaluate with a sliding window
    privacy: PrivacyTrainingSection | None = None  # DP-SGD; required where the coalition's policy requires DP


class IntensitySection(BaseModel):
    """How this site's scanner's values become model inputs (tclearn.learning.volumes.Intensity)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["as_stored", "ct", "zscore"] = "as_stored"
    window: tuple[float, float] | None = None  # ct: the HU window kept, e.g. [-100, 200]


class PolicySection(BaseModel):
    """The acceptance policy settings this site expects: the site applies the policy the coalition declared on chain,
    and refuses to start if it differs on any setting named here (none named: whatever the chain declares)."""

    model_config = ConfigDict(extra="forbid")
    tolerance_global: float | None = None
    tolerance_local: float | None = None
    min_batch_size: int | None = None
    max_drift: float | None = None
    tolerance_stratum: float | None = None
    min_stratum: int | None = None
    max_update: float | None = None
    aggregator: str | None = None

    @model_validator(mode="after")
    def _a_policy(self) -> Self:
        try:
            AcceptancePolicy(**self.expected())  # the policy's own bounds, named as it names them
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self

    def expected(self) -> dict[str, Any]:
        """The settings named, by the policy's field names."""
        return self.model_dump(exclude_none=True)


class HESection(BaseModel):
    """Variant C: how each encrypted increment is trained (full-batch gradient steps)."""

    model_config = ConfigDict(extra="forbid")
    steps: int = Field(default=ENCRYPTED_TRAINING.steps, ge=1)
    lr: float = Field(default=ENCRYPTED_TRAINING.lr, gt=0)


class SiteConfig(ServiceSettings):
    """`member.toml` / `node.toml`: one hospital's services (read as `TCLEARN_SITE_*` by neither service)."""

    model_config = SettingsConfigDict(env_prefix="TCLEARN_SITE_")
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
    finetuned: Path = Path("finetuned")  # the hospital's own fine-tuned models (never in the vault or on chain)
    exports: Path = Path("exports")  # member API: the fingerprinted copies this hospital exported (each on chain)
    unlabelled: Path | None = None  # active learning: the images waiting for annotation (the member API ranks these)
    rankings: Path = Path("rankings")  # member API: the rankings it wrote (ranking.json and thumbnails each)
    attack: Attack = Attack.NONE  # simulations only: makes this site a Byzantine member
    poll_interval: float = Field(default=1.0, gt=0)
    keeper_interval: float = Field(default=10.0, gt=0)  # node: how often deadlines are checked without events
    confirmations: int = Field(default=0, ge=0)
    # how this site's votes reach the chain: "signed" (posted to the vault's ballot box, carried in one `decide`
    # by whoever completes a deciding set) or "direct" (one `vote` transaction: the fallback for a site that
    # cannot reach the vault's ballot box; it costs a transaction per vote)
    votes: VoteMode = VoteMode.SIGNED
    # folder of the per-account nonce lock files: the member API and the node daemon of one hospital sign as
    # one account and must see the same folder (default: the system temp folder's tclearn-nonces-<uid>)
    nonce_locks: Path | None = None
    operator_token_env: str = "TCLEARN_OPERATOR_TOKEN"
    public_url: str | None = Field(default=None, pattern=r"^https?://")  # member API: the URL peers sign for
    replay_store: str | None = None  # member API: SQLAlchemy URL of the seen nonces replicas share
    intensity: IntensitySection = IntensitySection()  # this site's own images (train/, test/)
    global_intensity: IntensitySection | None = None  # G's images (default: as this site's)
    cache_mib: int = Field(default=256, ge=1)  # per data set: prepared images kept in memory; one must fit
    model: ModelSection = ModelSection()
    training: TrainingSection = TrainingSection()
    policy: PolicySection = PolicySection()  # what this site expects of the coalition's policy on chain
    he: HESection = HESection()

    @model_validator(mode="after")
    def _one_signer(self) -> Self:
        if (self.keystore is None) == (self.dev_account is None):
            raise ValueError("give exactly one of keystore (a file) or dev_account (a local dev chain's index)")
        return self

    def resolved(self, folder: Path) -> Self:
        """The config with its relative paths (and a relative SQLite file) taken from `folder`."""
        paths = {
            name: folder / value
            for name in (
                "deployment",
                "keystore",
                "encryption_key",
                "data",
                "global_test",
                "nonce_locks",
                "finetuned",
                "exports",
                "unlabelled",
                "rankings",
            )
            if isinstance(value := getattr(self, name), Path) and not value.is_absolute()
        }
        state = self.state
        prefix = "sqlite:///"
        if state.startswith(prefix) and not state.startswith(prefix + "/") and ":memory:" not in state:
            state = prefix + str(folder / state.removeprefix(prefix))
        return self.model_copy(update={**paths, "state": state})


class MemberSettings(SiteConfig):
    """The site file as the member service reads it: `TCLEARN_MEMBER_*` variables override it."""

    model_config = SettingsConfigDict(env_prefix="TCLEARN_MEMBER_")


class NodeSettings(SiteConfig):
    """The site file as the node daemon reads it: `TCLEARN_NODE_*` variables override it."""

    model_config = SettingsConfigDict(env_prefix="TCLEARN_NODE_")


Site = TypeVar("Site", bound=SiteConfig)


def load_site_config(
    path: Path,
    model: type[Site] = SiteConfig,  # type: ignore[assignment]  # a TypeVar's default: mypy#3737
    overrides: Mapping[str, Any] | None = None,
) -> Site:
    """The site file at `path` under `model`'s environment variables and `overrides`, its relative paths
    taken from the file's folder."""
    return load_settings(model, path, overrides).resolved(path.parent.resolve())


def site_from_env(model: type[Site]) -> Site:
    """The site file named by `{PREFIX}CONFIG` (a service started by `uvicorn --factory`)."""
    path = os.environ.get(model.config_env())
    if not path:
        raise ConfigError(f"set {model.config_env()} to the path of the site file")
    return load_site_config(Path(path), model)
