"""Variant C's parts of the coalition duties: the model is a CKKS container, the supervisor holds the key.

`member`, `general` and `validator` call these where variant C differs and keep everything else (ledger
submission and rebasing, the check-and-report loop, the acceptance policy, evidence and votes):

- member: the head container is read from the vault (re-hashed against the chain) under the public context
  the supervisor registered on chain; an encrypted increment is trained on the member's features with
  supervisor refreshes (`tclearn.he.duties.train_model`); a Byzantine member applies its attack
  homomorphically (`tclearn.he.attacks`);
- general: the container parses under the coalition's context and has the coalition's model shape, and the
  metadata declares both;
- validator: accuracy on G and on its L through encrypted inference; the supervisor decrypts only the
  label-signed logits of each set and returns the aggregate.

Every hospital holds a public context only (`HEMember`); nothing here can decrypt.
"""

from __future__ import annotations

from typing import Any

from tclearn.coalition.context import Coalition, HEMember, HESettings, Hospital
from tclearn.coalition.policy import Scores
from tclearn.errors import ConfigError, ContextMismatch, IntegrityError
from tclearn.he.attacks import attack_model, flip_labels
from tclearn.he.context import HEContext
from tclearn.he.duties import encrypted_scores, features, train_model
from tclearn.he.encrypted import EncryptedModel, compact, load_model, store_model
from tclearn.he.keys import fetch_context
from tclearn.learning.attacks import Attack
from tclearn.ledger.client import LedgerClient
from tclearn.types import Role
from tclearn.vault.store import BlobStore


def registered_context(client: LedgerClient, supervisor: str) -> str:
    """The public context hash the supervisor registered on chain as its encryption key."""
    member = client.get_member(supervisor)
    if member is None or not member.active or Role.SUPERVISOR not in member.roles:
        raise ConfigError(f"{supervisor} is not an active supervisor of this coalition")
    return member.encryption_key.hex()


def public_context(client: LedgerClient, store: BlobStore, supervisor: str) -> HEContext:
    """The coalition's public context as a member fetches it: named on chain, re-hashed by the vault."""
    return fetch_context(store, registered_context(client, supervisor))


def settings_of(co: Coalition) -> HESettings:
    if co.he is None:
        raise ConfigError("this coalition has no encrypted-model settings (variant C)")
    return co.he


def member_of(hospital: Hospital) -> HEMember:
    if hospital.he is None:
        raise ConfigError(f"{hospital.name} holds no public CKKS context (variant C)")
    return hospital.he


def train(co: Coalition, member: Hospital, parent_hash: str, seed: int) -> tuple[str, dict[str, Any]]:
    """`member`'s encrypted increment of the parent, stored; returns its hash and its metadata."""
    settings, mine = settings_of(co), member_of(member)
    registered = registered_context(co.client, settings.supervisor)
    if registered != mine.context.hash:
        raise ContextMismatch(
            f"the supervisor's registered context is {registered[:16]}..., "
            f"{member.name} holds {mine.context.hash[:16]}...",
            context=mine.context.hash,
            expected=registered,
        )
    x, y = features(member.train, f"{member.name}'s training data")
    if member.attack is Attack.LABEL_FLIP:
        y = flip_labels(y)
    with co.clock("vault"):
        parent = load_model(co.store, parent_hash, mine.context)  # the store re-hashes against the chain's hash
    with co.clock("training"):
        he, client = mine.context, mine.supervisor
        child = train_model(he, parent, x, y, client, steps=settings.steps, lr=settings.lr, ref=parent_hash)
        submitted = compact(he, attack_model(member.attack, he, parent, child, client, seed=seed))
    with co.clock("vault"):
        model_hash = store_model(co.store, submitted)
    metadata = {
        "model": settings.spec.to_json(),
        "context": mine.context.hash,
        "parent": parent_hash,
        "training": {"steps": settings.steps, "lr": settings.lr, "batch_size": len(x), "samples": len(x)},
        "data": member.manifest.summary(),
        "scores": {},
    }
    return model_hash, metadata


def declared_problem(co: Coalition, metadata: dict[str, Any]) -> str | None:
    """What the metadata declares wrongly about the encrypted model (shape, context), or None."""
    settings = settings_of(co)
    if metadata.get("model") != settings.spec.to_json():
        return f"metadata declares model {metadata.get('model')}, the coalition's is {settings.spec.to_json()}"
    if metadata.get("context") != settings.context:
        return f"metadata declares context {metadata.get('context')}, the coalition's is {settings.context}"
    return None


def open_container(co: Coalition, reader: Hospital, model_hash: str) -> EncryptedModel:
    """The container `model_hash`, parsed under the reader's public context and checked for the coalition's
    model shape. Raises `ContextMismatch` (another context), `IntegrityError` or `NotFoundError`."""
    with co.clock("vault"):
        model = load_model(co.store, model_hash, member_of(reader).context)
    spec = settings_of(co).spec
    if model.spec != spec:
        raise IntegrityError(f"the container holds a {model.spec.to_json()} model, the coalition's is {spec.to_json()}")
    return model


def scores(co: Coalition, validator: Hospital, model_hash: str) -> Scores:
    """Accuracy of `model_hash` on G and on the validator's L, by encrypted inference (two supervisor scores)."""
    open_container(co, validator, model_hash)
    mine = member_of(validator)
    with co.clock("evaluation"):
        on_g = encrypted_scores(co.store, mine.context, model_hash, *features(co.global_test, "G"), mine.supervisor)
        on_l = encrypted_scores(
            co.store, mine.context, model_hash, *features(validator.local_test, "L"), mine.supervisor
        )
    return Scores(on_g.accuracy, on_l.accuracy)
