"""The model-backend seam: how a coalition's models are stored, opened, trained and scored.

A security variant is one implementation of `ModelBackend`, chosen once when the coalition is built
(`tclearn.coalition.build`): `PlainBackend` (A, safetensors in clear), `SealedBackend` (B, the same bytes
envelope-encrypted for every active member) and `tclearn.coalition.ckks.CkksBackend` (C, a CKKS container
only the supervisor can decrypt). The duties (member, general, validator) call the backend and never ask
which variant it is. A and B share their tensor work in `TensorBackend`; FedAvg aggregation and prediction
need tensors and say so by asking for a `TensorBackend`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import torch
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from torch import nn

from tclearn.coalition.hospital import Clock, Hospital
from tclearn.coalition.policy import AcceptancePolicy
from tclearn.errors import AccessDenied, ConflictError
from tclearn.learning.attacks import attack_weights
from tclearn.learning.evaluate import evaluate
from tclearn.learning.models import ModelConfig, arch_hash, build_model
from tclearn.learning.poison import attack_training, poisoned
from tclearn.learning.samples import Samples
from tclearn.learning.strata import Scored
from tclearn.learning.train import CancelToken, TrainConfig, train_increment
from tclearn.learning.update import update_norm
from tclearn.records import ModelDescription, Privacy, TrainingFacts
from tclearn.types import Variant
from tclearn.vault.codec import Architecture, architecture_of, decode_model, encode_model
from tclearn.vault.envelope import seal, unseal
from tclearn.vault.store import BlobStore

M = TypeVar("M")
StateDict = dict[str, torch.Tensor]
OnStep = Callable[[int, int], None]  # (steps done, steps in all)
Admission = Callable[[Privacy], None]  # sees a DP increment's privacy facts before its first step; raises to refuse


@dataclass(frozen=True)
class Trained(Generic[M]):
    """What a member submits after training on the parent (a Byzantine member's attack included)."""

    model: M
    facts: TrainingFacts
    privacy: Privacy | None = None  # how it was trained with differential privacy, if it was


class ModelBackend(Protocol[M]):
    """One security variant's way with models; `M` is what an opened model is (tensors, a CKKS container)."""

    @property
    def variant(self) -> Variant: ...

    clock: Clock  # where storing, training and scoring count their time

    def describe(self) -> ModelDescription:
        """The coalition's model as candidates must declare it."""
        ...

    def store_model(self, model: M) -> str:
        """Stores `model` as the variant requires; returns the hash that goes on chain."""
        ...

    def open(self, reader: Hospital, model_hash: str) -> M:
        """The stored model as `reader` can open it, re-hashed and checked against the coalition's model.

        Raises `IntegrityError` (wrong hash, undecryptable, wrong shape, non-finite values), `ContextMismatch`
        or `NotFoundError`."""
        ...

    def inspect(self, reader: Hospital, model: M, ref: str) -> str | None:
        """What the general finds wrong with an opened model beyond its decoding (variant C: weights beyond the
        range its metadata declares), or None."""
        ...

    def update_size(self, parent: M, model: M) -> float | None:
        """`model`'s distance from `parent` over the parent's norm (`tclearn.learning.update`); None where the
        variant cannot read weights in clear (C: the weights check bounds them instead)."""
        ...

    def train(
        self,
        member: Hospital,
        parent: M,
        *,
        seed: int,
        ref: str = "",
        cancel: CancelToken | None = None,
        on_step: OnStep | None = None,
        admit: Admission | None = None,
    ) -> Trained[M]:
        """`member`'s increment of `parent` (`ref`: its hash) on its training data; a Byzantine member applies
        its attack (seeded by `seed`). A DP-SGD increment shows `admit` the `Privacy` it will declare before its
        first step (`admit` raises to refuse it)."""
        ...

    @property
    def private(self) -> bool:
        """Whether its increments are trained with differential privacy (DP-SGD)."""
        ...

    def score(self, reader: Hospital, model: M, data: Samples, ref: str) -> Scored:
        """The model's headline score on labelled `data`, and on each of its strata (`tclearn.learning.strata`);
        `ref`, the model's hash, names it in logs."""
        ...


@dataclass
class TensorBackend:
    """Models as torch state dicts of one MONAI network (variants A and B)."""

    store: BlobStore
    config: ModelConfig
    training: TrainConfig
    clock: Clock = field(default_factory=Clock)
    variant: ClassVar[Variant]
    sealed: ClassVar[bool]  # True: a stored blob is ciphertext, only members holding a key open it
    _architecture: Architecture | None = field(default=None, init=False, repr=False)
    _description: ModelDescription | None = field(default=None, init=False, repr=False)

    def describe(self) -> ModelDescription:
        if self._description is None:
            self._description = ModelDescription("torch", self.config.to_dict(), arch_hash(self.config))
        return self._description

    def architecture(self) -> Architecture:
        if self._architecture is None:
            self._architecture = architecture_of(build_model(self.config).state_dict())
        return self._architecture

    def network(self, weights: StateDict) -> nn.Module:
        model = build_model(self.config)
        model.load_state_dict(weights)
        return model

    def store_model(self, model: StateDict) -> str:
        raise NotImplementedError

    def clear_chunks(self, reader: Hospital, model_hash: str) -> Iterator[bytes]:
        """The model's safetensors bytes, streamed and re-hashed (decrypted for `reader` when sealed)."""
        raise NotImplementedError

    def inspect(self, reader: Hospital, model: StateDict, ref: str) -> str | None:
        return None  # `open` checked everything: shapes, dtypes, finite values

    def update_size(self, parent: StateDict, model: StateDict) -> float | None:
        return update_norm(parent, model)

    def open(self, reader: Hospital, model_hash: str) -> StateDict:
        with self.clock("crypto" if self.sealed else "vault"):
            encoded = b"".join(self.clear_chunks(reader, model_hash))
        with self.clock("vault"):
            return decode_model(encoded, self.architecture())

    def train(
        self,
        member: Hospital,
        parent: StateDict,
        *,
        seed: int,
        ref: str = "",
        cancel: CancelToken | None = None,
        on_step: OnStep | None = None,
        admit: Admission | None = None,
    ) -> Trained[StateDict]:
        data = poisoned(member.attack, member.train, seed)
        with self.clock("training"):
            training = replace(self.training, seed=self.training.seed + seed)  # another order for another round
            training = attack_training(member.attack, training)
            patients = member.patients if len(data) == len(member.train) else None
            increment = train_increment(self.network(parent), data, training, cancel, on_step, patients, admit)
        probe = member.probe
        weights = attack_weights(
            member.attack,
            parent,
            increment.weights,
            seed=seed,
            probe=None if probe is None else (lambda w: self.score(member, w, probe, ref).score),
            tolerance=AcceptancePolicy.tolerance_global,  # the attacker assumes the default policy
        )
        return Trained(weights, increment.facts, increment.privacy)

    @property
    def private(self) -> bool:
        return self.training.dp is not None

    def score(self, reader: Hospital, model: StateDict, data: Samples, ref: str) -> Scored:
        with self.clock("evaluation"):
            return evaluate(self.network(model), data, roi_size=self.training.patch).scored()


@dataclass
class PlainBackend(TensorBackend):
    """Variant A: the deterministic safetensors encoding, stored in clear."""

    variant: ClassVar[Variant] = Variant.A
    sealed: ClassVar[bool] = False

    def store_model(self, model: StateDict) -> str:
        with self.clock("vault"):
            return store_weights(self.store, model)

    def clear_chunks(self, reader: Hospital, model_hash: str) -> Iterator[bytes]:
        return self.store.iter_blob(model_hash)


@dataclass
class SealedBackend(TensorBackend):
    """Variant B: the safetensors bytes AES-256-GCM encrypted, the data key wrapped for every active member's
    X25519 key (`recipients`: address -> public key, read from the chain); `keys` are the private keys of the
    hospitals this process acts for."""

    recipients: Callable[[], Mapping[str, bytes]] = dict
    keys: Mapping[str, X25519PrivateKey] = field(default_factory=dict)
    variant: ClassVar[Variant] = Variant.B
    sealed: ClassVar[bool] = True

    def store_model(self, model: StateDict) -> str:
        with self.clock("crypto"):
            return store_weights(self.store, model, self.recipients())

    def clear_chunks(self, reader: Hospital, model_hash: str) -> Iterator[bytes]:
        key = self.keys.get(reader.address)
        if key is None:
            raise AccessDenied(f"{reader.name} holds no X25519 key in this process; it cannot open sealed models")
        return unseal(self.store, model_hash, reader.address, key)


def store_weights(store: BlobStore, weights: StateDict, readers: Mapping[str, bytes] | None = None) -> str:
    """Stores `weights` in clear, or sealed for `readers` (address -> X25519 public key); returns the hash."""
    encoded = encode_model(weights)
    return store.put(encoded) if readers is None else seal(store, [encoded], readers)


def tensors(backend: ModelBackend[Any], what: str) -> TensorBackend:
    """The backend as a `TensorBackend`, or a `ConflictError` saying that `what` needs a model in clear."""
    if not isinstance(backend, TensorBackend):
        raise ConflictError(
            f"{what}: the model is encrypted under the supervisor's key (variant {backend.variant.name}); "
            "no member can use it in clear"
        )
    return backend
