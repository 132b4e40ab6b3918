"""The member's duty: pull the head, open it, train an increment on local data, store it, submit.

The coalition's backend opens, trains and stores the model, whatever the variant; this module only orders the
steps, declares the candidate's metadata and rebases when another candidate commits first. A Byzantine
hospital (for simulations and tests) follows the same path and its backend applies its attack.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from tclearn import __version__
from tclearn.coalition.blobs import put_record, vault_uri
from tclearn.coalition.budget import admission, check_private_training
from tclearn.coalition.context import Coalition, Hospital
from tclearn.errors import ContractRevert, TrainingCancelled
from tclearn.learning.manifest import Manifest
from tclearn.learning.train import CancelToken
from tclearn.ledger.client import Submission
from tclearn.ledger.values import epsilon_units
from tclearn.records import CandidateMetadata, DataCompression, DataSummary

log = logging.getLogger(__name__)
MAX_REBASES = 3
PROPOSAL_PHASES = ("pulling", "training", "storing", "submitting")
Progress = Callable[[str, float], None]  # (phase, fraction of that phase done), phases as above


def report_phase(progress: Progress | None, phase: str, fraction: float, cancel: CancelToken | None = None) -> None:
    """Reports a phase's progress, and stops here (`TrainingCancelled`) when the run was cancelled."""
    if cancel is not None and cancel.cancelled:
        raise TrainingCancelled(f"cancelled before {phase} finished", phase=phase)
    if progress is not None:
        progress(phase, fraction)


@dataclass(frozen=True)
class Proposal:
    submission: Submission
    model_hash: str
    metadata_hash: str
    rebases: int


def data_summary(manifest: Manifest) -> DataSummary:
    """What a candidate declares of its training set: the manifest's fingerprint, the committee's picks among its
    images and their coding."""
    coding = manifest.compression
    return DataSummary(
        **manifest.summary(),
        committee_chosen=manifest.committee_chosen,
        compression=None if coding is None else DataCompression(coding.coded, coding.lossy, coding.max_ratio),
    )


def increment(
    co: Coalition, member: Hospital, head_id: int, cancel: CancelToken | None, progress: Progress | None
) -> tuple[str, CandidateMetadata]:
    """`member`'s increment of model `head_id`, stored; returns its hash and the metadata it declares."""
    report_phase(progress, "pulling", 0.0, cancel)
    parent_hash = co.client.get_model(head_id, with_uri=False).model_hash.hex()
    parent = co.backend.open(member, parent_hash)  # re-hashed against the chain's hash by the store
    report_phase(progress, "training", 0.0, cancel)
    on_step = None if progress is None else lambda done, total: progress("training", done / total)
    # Seeded by the id the candidate will take: a member that trains again on the same head (its last candidate
    # rejected) submits another increment, never the same blob twice (the contract refuses a duplicate).
    seed = co.client.model_count()
    check_private_training(co, member)
    trained = co.backend.train(
        member, parent, seed=seed, ref=parent_hash, cancel=cancel, on_step=on_step, admit=admission(co, member)
    )
    report_phase(progress, "storing", 0.0, cancel)
    model_hash = co.backend.store_model(trained.model)
    metadata = CandidateMetadata(
        variant=co.backend.variant.name,
        mode="incremental",
        parent=parent_hash,
        model=co.backend.describe(),
        training=trained.facts,
        tclearn_version=__version__,
        data=data_summary(member.manifest),
        update_norm=co.backend.update_size(parent, trained.model),
        privacy=trained.privacy,
    )
    return model_hash, metadata


def submit(co: Coalition, proposer: Hospital, head_id: int, model_hash: str, metadata: CandidateMetadata) -> Proposal:
    """Stores the metadata and submits the candidate on chain, charging the epsilon it declares to the proposer's
    privacy budget (reverts with `StaleParent` if the head moved, `OverBudget` past the coalition's cap)."""
    metadata_hash = put_record(co, metadata)
    charge = 0 if metadata.privacy is None else epsilon_units(metadata.privacy.epsilon)
    with co.clock("ledger"):
        submission = co.client.submit(
            proposer.account,
            head_id,
            bytes.fromhex(model_hash),
            vault_uri(model_hash),
            bytes.fromhex(metadata_hash),
            epsilon_charge=charge,
        )
    return Proposal(submission, model_hash, metadata_hash, 0)


def propose(
    co: Coalition, member: Hospital, *, cancel: CancelToken | None = None, progress: Progress | None = None
) -> Proposal:
    """Train on the current head and submit; if another candidate commits first, rebase (bounded).

    `cancel` stops the proposal at the next training step or phase boundary (`TrainingCancelled`; nothing is
    submitted); `progress(phase, fraction)` follows it through `PROPOSAL_PHASES`.
    """
    for rebases in range(MAX_REBASES + 1):
        head_id = co.client.head()
        model_hash, metadata = increment(co, member, head_id, cancel, progress)
        report_phase(progress, "submitting", 0.0, cancel)
        try:
            proposal = submit(co, member, head_id, model_hash, metadata)
            if progress is not None:
                progress("submitting", 1.0)
            return Proposal(proposal.submission, model_hash, proposal.metadata_hash, rebases)
        except ContractRevert as exc:
            if exc.error != "StaleParent" or rebases == MAX_REBASES:
                raise
            log.info("%s: head moved past model %d while training; rebasing", member.name, head_id)
    raise AssertionError("unreachable")
