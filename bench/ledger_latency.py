"""Ledger time of a round on a real Anvil node: submit -> open -> votes -> commit, 6 validators.

Ledger time only (signing, simulation, sending, receipts): no training, no vault. Median and spread
of 20 rounds, each from a fresh submission on the new head. Prints JSON; target median <= 1 s.
"""

from __future__ import annotations

import json
import os
import statistics
import time

from tclearn.ledger.accounts import dev_accounts
from tclearn.ledger.chain import connect
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.governance import Admit, Parameters
from tclearn.ledger.localchain import LocalNode
from tclearn.protocol import approvals_needed
from tclearn.types import ModelState, Role, Variant

VALIDATORS, ROUNDS, TARGET_S = 6, 20, 1.0


def main() -> None:
    with LocalNode("anvil", accounts=VALIDATORS + 2) as node:
        chain = connect(node.url)
        deployer, proposer, *validators = dev_accounts(VALIDATORS + 2)
        founders = [
            Admit(proposer.address, Role.MEMBER, os.urandom(32), "proposer"),
            *(
                Admit(v.address, Role.MEMBER | Role.VALIDATOR, os.urandom(32), f"h{i}")
                for i, v in enumerate(validators)
            ),
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
        by_address = {v.address: v for v in validators}
        needed = approvals_needed(VALIDATORS)
        times: dict[str, list[float]] = {"submit": [], "open": [], "votes": [], "round": []}
        for _ in range(ROUNDS):
            t0 = time.perf_counter()
            s = client.submit(proposer, client.head(), os.urandom(32), "vault://sha256/" + "ab" * 32, os.urandom(32))
            t1 = time.perf_counter()
            client.open_candidate(by_address[s.general], s.model_id, True, os.urandom(32))
            t2 = time.perf_counter()
            voters = [v for v in validators if v.address != proposer.address][:needed]
            outcomes = [client.vote(v, s.model_id, True, 0.9, 0.9, os.urandom(32)) for v in voters]
            t3 = time.perf_counter()
            assert outcomes[-1].state == ModelState.COMMITTED and client.head() == s.model_id
            for key, value in (("submit", t1 - t0), ("open", t2 - t1), ("votes", t3 - t2), ("round", t3 - t0)):
                times[key].append(value)
    median = statistics.median(times["round"])
    print(
        json.dumps(
            {
                "benchmark": "ledger_latency",
                "chain": "anvil",
                "validators": VALIDATORS,
                "votes_per_round": needed,
                "rounds": ROUNDS,
                "median_s": {k: round(statistics.median(v), 4) for k, v in times.items()},
                "p90_round_s": round(sorted(times["round"])[int(0.9 * ROUNDS) - 1], 4),
                "max_round_s": round(max(times["round"]), 4),
                "target": {"median_round_s": TARGET_S, "ok": median <= TARGET_S},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
