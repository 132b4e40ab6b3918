"""A committed model opened as a network: found on chain, fetched from the vault and checked against its hash.

What a member runs on any committed model outside training and export (the JPEG 2000 robustness report of
`tclearn evaluate --model-id`): the model must be committed (`exports.exportable`), and held in clear (variants
A and B; in variant C no member can open it).
"""

from __future__ import annotations

from torch import nn

from tclearn.coalition.backend import tensors
from tclearn.coalition.context import Coalition, Hospital
from tclearn.coalition.exports import exportable


def committed_network(co: Coalition, reader: Hospital, model_id: int, purpose: str = "evaluating") -> nn.Module:
    """Committed model `model_id` as `reader` opens it, verified (`NotFoundError`, `ConflictError`,
    `IntegrityError` otherwise)."""
    record = exportable(co.client, model_id)
    backend = tensors(co.backend, f"{purpose} model {model_id}")  # variant C: ConflictError
    return backend.network(backend.open(reader, record.model_hash.hex()))
