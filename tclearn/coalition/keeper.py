"""The keeper's duty: when a deadline passes, draw a new general or expire the candidate (anyone may)."""

from __future__ import annotations

import logging

from eth_account.signers.local import LocalAccount

from tclearn.errors import ContractRevert
from tclearn.ledger.ledger import Ledger
from tclearn.types import ModelState

log = logging.getLogger(__name__)


def keep(client: Ledger, caller: LocalAccount, model_id: int, now: int) -> str | None:
    """Acts on one pending candidate whose deadline passed; returns what was done, or None."""
    m = client.get_model(model_id, with_uri=False)
    if m.state is ModelState.SUBMITTED and now > m.general_deadline:
        try:
            client.reassign_general(caller, model_id)
            log.info("candidate %d: general %s stayed silent; a new general was drawn", model_id, m.general)
            return "reassigned"
        except ContractRevert as exc:
            if exc.error != "NoOtherGeneral":
                raise
    if m.state in (ModelState.SUBMITTED, ModelState.OPEN):
        deadline = m.general_deadline if m.state is ModelState.SUBMITTED else m.voting_deadline
        if now > deadline:
            client.expire(caller, model_id)
            log.info("candidate %d expired", model_id)
            return "expired"
    return None
