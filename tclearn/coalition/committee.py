"""The committee of coalitional active learning: the last K committed models with different proposers, read from
the chain and verified from the vault.

The walk starts at the head and follows parents on chain; each model whose proposer already sits on the committee
is passed over (the committee wants models trained at different hospitals, and a hospital's latest model stands
for it). The genesis never sits: it is the untrained random start, no hospital's model, and its votes would be
noise. A model whose blob fails verification (its hash, its decryption, its shapes) is skipped with a logged
warning and the walk goes on: the operator still gets a ranking, the ranking names the models that sat, and the
log names the one the vault could not give back. Fewer than two models -> `ConflictError` naming how many sat
and how many were skipped; variant C (encrypted models) -> the `tensors` `ConflictError`.
"""

from __future__ import annotations

import logging

from tclearn.coalition.backend import tensors
from tclearn.coalition.context import Coalition
from tclearn.coalition.hospital import Hospital
from tclearn.errors import ConfigError, ConflictError, IntegrityError
from tclearn.learning.ranking import CommitteeModel
from tclearn.protocol import GENESIS

log = logging.getLogger(__name__)


def committee(co: Coalition, member: Hospital, k: int) -> list[CommitteeModel]:
    """Up to `k` (>= 2) committed models of different proposers, newest first, opened by `member` (see the
    module)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ConfigError(f"a committee has at least 2 models, got {k!r}")
    backend = tensors(co.backend, "a committee")
    seated: list[CommitteeModel] = []
    skipped: list[int] = []
    proposers: set[str] = set()
    model_id = co.client.head()
    while model_id != GENESIS and len(seated) < k:
        record = co.client.get_model(model_id, with_uri=False)
        proposer = record.proposer.lower()
        if proposer not in proposers:
            try:
                weights = backend.open(member, record.model_hash.hex())
            except IntegrityError as exc:
                log.warning("committee: model %d of %s skipped, it fails verification: %s", model_id, proposer, exc)
                skipped.append(model_id)
            else:
                proposers.add(proposer)
                network = backend.network(weights)
                seated.append(CommitteeModel(model_id, record.proposer, record.model_hash.hex(), network))
        model_id = record.parent_id
    if len(seated) < 2:
        why = f"; models {skipped} failed verification" if skipped else ""
        raise ConflictError(
            f"a committee needs committed models of at least two different hospitals, the chain holds "
            f"{len(seated)} that verify (head {co.client.head()}, the genesis not counted){why}; "
            "rank with --method tta or random until another hospital's increment is committed",
            models=len(seated),
        )
    return seated


def head_model(co: Coalition, member: Hospital) -> CommitteeModel:
    """The head, opened and verified by `member`: the one model of single-model uncertainty (tta, dropout); it may
    be the genesis, whose uncertainty is that of a random network."""
    backend = tensors(co.backend, "ranking by one model's uncertainty")
    head = co.client.head()
    record = co.client.get_model(head, with_uri=False)
    weights = backend.open(member, record.model_hash.hex())
    return CommitteeModel(head, record.proposer, record.model_hash.hex(), backend.network(weights))
