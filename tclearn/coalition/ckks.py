"""Variant C's model backend: the model is a CKKS container and only the supervisor holds the secret key.

Every hospital holds the public context the supervisor registered on chain (its hash is the supervisor's
key there) and a supervisor client signed as itself; nothing here can decrypt. Training runs full-batch
gradient steps on the encrypted weights with supervisor refreshes (`tclearn.he.duties.train_model`); a
Byzantine member poisons homomorphically (`tclearn.he.attacks`); scores come from encrypted inference, the
supervisor decrypting only the label-signed logits of a set and returning the aggregate accuracy (a set is
scored class by class, for the accuracy within each class).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from tclearn.canonical import canonical_hash
from tclearn.coalition.backend import Admission, OnStep, Trained
from tclearn.coalition.founding import Founder
from tclearn.coalition.hospital import Clock, Hospital
from tclearn.errors import AccessDenied, ConfigError, IntegrityError
from tclearn.he.attacks import attack_model, flip_labels
from tclearn.he.client import SupervisorClient
from tclearn.he.context import HEContext
from tclearn.he.duties import agree_scaling, features, range_problem, score_model, train_model, with_levels
from tclearn.he.encrypted import (
    INFERENCE_LEVELS,
    EncryptedModel,
    compact,
    encrypt_model,
    load_container,
    store_container,
)
from tclearn.he.keys import generate, key_bytes32, publish_context
from tclearn.he.model import ModelSpec, Weights, init_weights, step_size, weight_bounds
from tclearn.he.scaling import Scaling
from tclearn.learning.attacks import Attack
from tclearn.learning.samples import Samples
from tclearn.learning.strata import Scored, StratumScore, class_names, class_strata, members, weighted_mean
from tclearn.learning.tables import BINARY
from tclearn.learning.train import CancelToken
from tclearn.records import ModelDescription, TrainingFacts
from tclearn.types import Role, Variant
from tclearn.vault.store import BlobStore


@dataclass
class CkksBackend:
    """Encrypted models under one public context; `clients` reach the supervisor for each hospital here."""

    store: BlobStore
    spec: ModelSpec
    context: HEContext  # public: no secret key
    clients: Mapping[str, SupervisorClient]
    steps: int = 3  # full-batch encrypted gradient steps per increment
    lr: float = 1.0
    clock: Clock = field(default_factory=Clock)
    variant: ClassVar[Variant] = Variant.C

    def __post_init__(self) -> None:
        if self.context.can_decrypt:
            raise ConfigError("a member's backend must hold the public context only, never the secret key")
        if self.steps < 1:
            raise ConfigError(f"encrypted training needs at least 1 step per increment, got {self.steps}")

    def describe(self) -> ModelDescription:
        """The model, its scaling (by hash: it is in every container) and its range assumption (`weight_bounds`:
        the general measures every candidate against it)."""
        return describe(self.spec, self.context.hash)

    def client(self, hospital: Hospital) -> SupervisorClient:
        found = self.clients.get(hospital.address)
        if found is None:
            raise AccessDenied(f"{hospital.name} has no way to the supervisor in this process")
        return found

    def store_model(self, model: EncryptedModel) -> str:
        with self.clock("vault"):
            return store_container(self.store, model)

    def open(self, reader: Hospital, model_hash: str) -> EncryptedModel:
        with self.clock("vault"):
            model = load_container(self.store, model_hash, self.context)
        if model.spec != self.spec:
            raise IntegrityError(
                f"the container holds a {summary(model.spec)} model, the coalition's is {summary(self.spec)}"
            )
        return model

    def inspect(self, reader: Hospital, model: EncryptedModel, ref: str) -> str | None:
        with self.clock("evaluation"):
            return range_problem(self.context, model, self.client(reader), ref)

    def update_size(self, parent: EncryptedModel, model: EncryptedModel) -> float | None:
        return None  # encrypted weights: no distance in clear; `inspect` bounds them by the declared range

    def train(
        self,
        member: Hospital,
        parent: EncryptedModel,
        *,
        seed: int,
        ref: str = "",
        cancel: CancelToken | None = None,
        on_step: OnStep | None = None,
        admit: Admission | None = None,
    ) -> Trained[EncryptedModel]:
        """A few encrypted full-batch steps: not cancellable midway, progress reported at the end; never DP-SGD
        (`admit` is not called)."""
        x, y = features(member.train, f"{member.name}'s training data")
        if member.attack is Attack.LABEL_FLIP:
            y = flip_labels(y)
        client, started = self.client(member), time.perf_counter()
        rate = step_size(self.lr, self.spec.prepare(x))
        with self.clock("training"):
            child = train_model(self.context, parent, x, y, client, steps=self.steps, lr=self.lr, ref=ref)
            submitted = compact(self.context, attack_model(member.attack, self.context, parent, child, client, seed))
        if on_step is not None:
            on_step(self.steps, self.steps)
        facts = TrainingFacts(
            samples=len(x),
            epochs=self.steps,  # one full-batch step is one pass over the data
            batch_size=len(x),
            optimiser="gd",
            lr=round(rate, 6),  # the step size itself: `lr` times the largest stable step on this member's rows
            seed=seed,
            loss="logistic",
            steps=self.steps,
            duration_s=round(time.perf_counter() - started, 3),
            device="ckks",
        )
        return Trained(submitted, facts)

    @property
    def private(self) -> bool:
        return False  # encrypted full-batch steps, not DP-SGD

    def score(self, reader: Hospital, model: EncryptedModel, data: Samples, ref: str) -> Scored:
        """Each class's subset scored apart — the supervisor decrypts only that subset's aggregate accuracy — and
        the headline accuracy their mean weighted by size: each sample is inferred once, as for the whole set,
        at one score request per class instead of one per set."""
        _, y = features(data, "the test set")
        client = self.client(reader)
        strata = []
        with self.clock("evaluation"):
            ready = with_levels(self.context, model, INFERENCE_LEVELS, client, ref)  # one refresh for all classes
            classes = class_strata(torch.from_numpy(y).long(), data.classes)
            for name, indices in members(classes, class_names(data.classes, len(BINARY))).items():
                x_class, y_class = features(data.subset(indices), "the test set")
                score = score_model(self.context, ready, x_class, y_class, client, ref)
                strata.append(StratumScore(name, score.count, score.accuracy))
        return Scored(weighted_mean(strata), tuple(strata))


def model_spec(global_test: Samples, scaling: Scaling | None = None) -> ModelSpec:
    """The coalition's encrypted model: a logistic regression over G's feature columns, on the coalition's
    scaling of them."""
    return ModelSpec("logreg", int(features(global_test, "G")[0].shape[1]), scaling=scaling)


def summary(spec: ModelSpec) -> str:
    scaling = "no scaling" if spec.scaling is None else f"scaling {spec.scaling.sha256[:16]}..."
    return f"{spec.shape} ({scaling})"


def describe(spec: ModelSpec, context: str) -> ModelDescription:
    config = {
        "model": spec.shape,
        "scaling": None if spec.scaling is None else spec.scaling.sha256,
        "range": {name: bound.to_json() for name, bound in weight_bounds(spec).items()},
        "context": context,
    }
    return ModelDescription("ckks", config, canonical_hash(config))


def genesis_spec(store: BlobStore, context: HEContext, genesis_hash: str) -> ModelSpec:
    """The coalition's model as its genesis container (named on chain) holds it: shape and scaling."""
    return load_container(store, genesis_hash, context).spec


@dataclass(frozen=True)
class EncryptedGenesis:
    """What the supervisor made at founding: its secret context, the public context's hash, the genesis."""

    secret: HEContext
    context: str
    weights: Weights
    model_hash: str


@dataclass(frozen=True)
class SiteRows:
    """What the founding's scaling round reads: the feature columns and each site's raw training rows (each
    site's statistics are computed from its own rows alone and reach the supervisor only summed)."""

    columns: tuple[str, ...]
    tables: tuple[np.ndarray, ...]
    robust: bool = True
    whiten: bool = True
    names: tuple[str, ...] = ()  # the tables' files, for errors


Founding = Callable[[HEContext], SupervisorClient]
"""Given the new secret context, the supervisor that holds it, as the founding's client (logged in its name)."""


def encrypted_genesis(
    store: BlobStore,
    global_test: Samples,
    seed: int,
    sites: SiteRows | None = None,
    founding: Founding | None = None,
) -> EncryptedGenesis:
    """New CKKS keys, the public context published in `store`; with `sites`, the coalition's feature scaling
    agreed by the scaling round (`duties.agree_scaling`: the sites encrypt their statistics under the public
    context, the supervisor holding the new keys, reached through `founding`, decrypts only their sums); the
    genesis logistic regression on that scaling, encrypted and stored."""
    secret, public = generate()
    context = publish_context(store, public)
    scaling = None
    if sites is not None:
        if founding is None:
            raise ConfigError("a scaling round needs the supervisor holding the new keys (founding=)")
        members = HEContext.from_public(public)
        scaling = agree_scaling(
            members,
            sites.columns,
            sites.tables,
            founding(secret),
            robust=sites.robust,
            whiten=sites.whiten,
            names=sites.names,
        )
    spec = model_spec(global_test, scaling)
    weights = init_weights(spec, seed)
    model_hash = store_container(store, compact(secret, encrypt_model(secret, spec, weights)))
    return EncryptedGenesis(secret, context, weights, model_hash)


def supervisor_founder(address: str, context: str) -> Founder:
    """The supervisor as a founder: its on-chain key is the public context's hash."""
    return Founder(address, key_bytes32(context), "supervisor", Role.SUPERVISOR)
