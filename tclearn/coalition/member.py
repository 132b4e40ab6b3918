"""The member's duty: pull the head, verify and open it, train an increment on local data, store it, submit.
In variant C the head is an encrypted container and the increment is trained under encryption
(`tclearn.coalition.encrypted.train`); submission and rebasing are the same.

A Byzantine hospital (for simulations and tests) follows the same path but adopts its attack: on its data
before training (label flipping) or on the weights it submits (random, scaled sign flip, noise, lazy).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from tclearn import __version__
from tclearn.coalition import encrypted
from tclearn.coalition.blobs import load_model, put_json, store_model
from tclearn.coalition.context import Coalition, Hospital
from tclearn.errors import ContractRevert, TrainingCancelled
from tclearn.learning.attacks import Attack, attack_weights, flip_labels
from tclearn.learning.metadata import increment_metadata
from tclearn.learning.models import build_model
from tclearn.learning.train import CancelToken, TrainingFacts, train_increment
from tclearn.ledger.client import Submission
from tclearn.types import Variant
from tclearn.vault.codec import architecture_of

log = logging.getLogger(__name__)
MAX_REBASES = 3
PROPOSAL_PHASES = ("pulling", "training", "storing", "submitting")
Progress = Callable[[str, float], None]  # (phase, fraction of that phase done), phases as above


def _report(progress: Progress | None, phase: str, fraction: float, cancel: CancelToken | None = None) -> None:
    """Reports a phase's progress, and stops here (`TrainingCancelled`) when the run was cancelled."""
    if cancel is not None and cancel.cancelled:
        raise TrainingCancelled(f"cancelled before {phase} finished", phase=phase)
    if progress is not None:
        progress(phase, fraction)


def vault_uri(sha256: str) -> str:
    return f"vault://sha256/{sha256}"


@dataclass(frozen=True)
class Proposal:
    submission: Submission
    model_hash: str
    metadata_hash: str
    rebases: int


@dataclass(frozen=True)
class Trained:
    parent_hash: str
    weights: dict[str, torch.Tensor]
    facts: TrainingFacts


def train_weights(
    co: Coalition,
    member: Hospital,
    head_id: int,
    *,
    cancel: CancelToken | None = None,
    progress: Progress | None = None,
) -> Trained:
    """What `member` submits after training on the head (a Byzantine member's attack included)."""
    _report(progress, "pulling", 0.0, cancel)
    head = co.client.get_model(head_id, with_uri=False)
    parent_hash = head.model_hash.hex()
    parent = load_model(co, member, parent_hash)  # re-hashed against the chain's hash by the store
    model = build_model(co.model)
    model.load_state_dict(parent)
    data = flip_labels(member.train) if member.attack is Attack.LABEL_FLIP else member.train
    _report(progress, "training", 0.0, cancel)
    on_step = None if progress is None else lambda done, total: progress("training", done / total)
    with co.clock("training"):
        increment = train_increment(model, data, co.training, cancel, on_step)
    return Trained(parent_hash, attack_weights(member.attack, parent, increment.weights, seed=head_id), increment.facts)


def _train_and_store(
    co: Coalition, member: Hospital, head_id: int, cancel: CancelToken | None, progress: Progress | None
) -> tuple[str, str]:
    if co.variant is Variant.C:  # a few encrypted full-batch steps: no progress reports, not cancellable
        parent_hash = co.client.get_model(head_id, with_uri=False).model_hash.hex()
        model_hash, metadata = encrypted.train(co, member, parent_hash, seed=head_id)
    else:
        trained = train_weights(co, member, head_id, cancel=cancel, progress=progress)
        _report(progress, "storing", 0.0, cancel)
        model_hash = store_model(co, trained.weights)
        metadata = increment_metadata(co.model, trained.facts, member.manifest, parent=trained.parent_hash)
        metadata["architecture"] = {k: v.to_json() for k, v in architecture_of(trained.weights).items()}
    metadata.update(variant=co.variant.name, tclearn_version=__version__)
    return model_hash, put_json(co, metadata)


def propose(
    co: Coalition, member: Hospital, *, cancel: CancelToken | None = None, progress: Progress | None = None
) -> Proposal:
    """Train on the current head and submit; if another candidate commits first, rebase (bounded).

    `cancel` stops the proposal at the next training step or phase boundary (`TrainingCancelled`; nothing is
    submitted); `progress(phase, fraction)` follows it through `PROPOSAL_PHASES`.
    """
    for rebases in range(MAX_REBASES + 1):
        head_id = co.client.head()
        model_hash, metadata_hash = _train_and_store(co, member, head_id, cancel, progress)
        _report(progress, "submitting", 0.0, cancel)
        try:
            with co.clock("ledger"):
                submission = co.client.submit(
                    member.account,
                    head_id,
                    bytes.fromhex(model_hash),
                    vault_uri(model_hash),
                    bytes.fromhex(metadata_hash),
                )
            if progress is not None:
                progress("submitting", 1.0)
            return Proposal(submission, model_hash, metadata_hash, rebases)
        except ContractRevert as exc:
            if exc.error != "StaleParent" or rebases == MAX_REBASES:
                raise
            log.info("%s: head moved past model %d while training; rebasing", member.name, head_id)
    raise AssertionError("unreachable")
