"""Ledger latency of a round on a real Anvil node that mines a block every 2 seconds: submit -> open -> decision,
6 validators, signed votes carried by one `decide` beside the same rounds decided by one vote transaction each.

Ledger time only (signing, simulation, sending, receipts): no training, no vault. 20 rounds per path, each from a
fresh submission on the new head; the latency is counted in blocks from the submission's block to the block that
commits it (and in seconds); the general votes first, then others up to two thirds. The direct path sends the
votes one after another, as validators that each wait for their receipt do. Prints JSON; target: median
submit -> commit <= 3 blocks with signed votes.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from eth_account.signers.local import LocalAccount

from tclearn.ledger.accounts import dev_accounts
from tclearn.ledger.chain import connect
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.governance import Admit, Parameters
from tclearn.ledger.ledger import VoteOutcome
from tclearn.ledger.localchain import LocalNode
from tclearn.ledger.votes import sign_vote
from tclearn.protocol import approvals_needed
from tclearn.types import ModelState, Role, Variant

VALIDATORS, BLOCK_TIME, TARGET_BLOCKS = 6, 2, 3
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
URI = "vault://sha256/" + "ab" * 32


def main() -> None:
    with LocalNode("anvil", accounts=VALIDATORS + 2, block_time=BLOCK_TIME) as node:
        chain = connect(node.url)
        deployer, proposer, *validators = dev_accounts(VALIDATORS + 2)
        founders = [Admit(proposer.address, Role.MEMBER, os.urandom(32), "proposer")]
        founders += [
            Admit(v.address, Role.MEMBER | Role.VALIDATOR, os.urandom(32), f"h{i}") for i, v in enumerate(validators)
        ]
        client, _ = LedgerClient.deploy(
            chain,
            deployer,
            variant=Variant.B,
            genesis_hash=os.urandom(32),
            genesis_uri="g",
            parameters=Parameters(os.urandom(32)),
            founders=founders,
        )
        by_address: dict[str, LocalAccount] = {v.address: v for v in validators}
        needed = approvals_needed(VALIDATORS)

        def signed(model_id: int, model_hash: bytes, voters: list[LocalAccount]) -> VoteOutcome:
            votes = [sign_vote(v, client.domain, model_id, model_hash, True, 0.9, 0.9, os.urandom(32)) for v in voters]
            return client.decide(voters[-1], model_id, votes)

        def direct(model_id: int, _hash: bytes, voters: list[LocalAccount]) -> VoteOutcome:
            return [client.vote(v, model_id, True, 0.9, 0.9, os.urandom(32)) for v in voters][-1]

        def rounds(decide: Callable[[int, bytes, list[LocalAccount]], VoteOutcome]) -> dict[str, Any]:
            blocks: list[int] = []
            seconds: list[float] = []
            for _ in range(ROUNDS):
                t0 = time.perf_counter()
                s = client.submit(proposer, client.head(), os.urandom(32), URI, os.urandom(32))
                client.open_candidate(by_address[s.general], s.model_id, True, os.urandom(32))
                model_hash = client.get_model(s.model_id, with_uri=False).model_hash
                others = [v for v in validators if v.address != s.general]
                outcome = decide(s.model_id, model_hash, [by_address[s.general], *others[: needed - 1]])
                seconds.append(time.perf_counter() - t0)
                assert outcome.state is ModelState.COMMITTED and client.head() == s.model_id
                blocks.append(outcome.tx.block_number - s.tx.block_number)
            return {
                "median_blocks": statistics.median(blocks),
                "max_blocks": max(blocks),
                "median_s": round(statistics.median(seconds), 2),
                "transactions": 2 + (1 if decide is signed else needed),
            }

        signed_rounds = rounds(signed)
        direct_rounds = rounds(direct)
    report = {
        "benchmark": "ledger_latency",
        "chain": f"anvil, a block every {BLOCK_TIME} s",
        "validators": VALIDATORS,
        "votes_per_round": needed,
        "rounds": ROUNDS,
        "signed": signed_rounds,
        "direct": direct_rounds,
        "target": {
            "median_submit_to_commit_blocks": TARGET_BLOCKS,
            "value": signed_rounds["median_blocks"],
            "ok": signed_rounds["median_blocks"] <= TARGET_BLOCKS,
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
