"""Gas of every Coalition operation and of a whole committed round, beside the EIP-cost minimum.

For eligible = 3, 6, 12, 24, 48 validators (the proposer is a member only, so all of them are eligible)
on the embedded chain: submit, open, vote (first, middle, deciding), expire, reassign, and a committed
round (submit + open + the votes needed). The minimum of each transaction is what the EIP schedule
charges for what the protocol cannot avoid: 21000 base, the transaction's own calldata (16 gas per
non-zero byte, 4 per zero byte), the storage the protocol must write (22100 per new slot, 5000 per
rewrite: see REQUIRED) and the logs actually emitted (375 + 375 per topic + 8 per data byte).
Prints JSON.
"""

from __future__ import annotations

import json
import os
from typing import Any

from tclearn.ledger.chain import Chain, embedded_chain
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.governance import Admit, Parameters
from tclearn.protocol import approvals_needed
from tclearn.types import Role, Variant

NEW_SLOT, REWRITE = 22_100, 5_000
# (new slots, rewritten slots) any implementation must write: submit stores the model hash, the metadata
# hash, the candidate's state record and the hash-uniqueness index, and bumps the model count; open and
# expire/reassign rewrite the state record; a vote records who voted and the tally (the first vote of a
# candidate needs a new slot for "who voted"), the deciding vote also moves head.
REQUIRED = {
    "submit": (4, 1),
    "open": (0, 1),
    "vote_first": (1, 1),
    "vote_middle": (0, 2),
    "vote_deciding": (0, 3),
    "expire": (0, 1),
    "reassign": (0, 1),
}
TARGETS = {"vote": 60_000, "submit": 150_000, "round_6": 450_000}


def calldata_gas(data: bytes) -> int:
    return sum(16 if b else 4 for b in data)


def log_gas(receipt: Any) -> int:
    return sum(375 + 375 * len(log["topics"]) + 8 * len(bytes(log["data"])) for log in receipt["logs"])


def measured(chain: Chain, tx_hash: str, op: str) -> dict[str, Any]:
    tx, receipt = chain.w3.eth.get_transaction(tx_hash), chain.w3.eth.get_transaction_receipt(tx_hash)
    new, rewrites = REQUIRED[op]
    minimum = 21_000 + calldata_gas(bytes(tx["input"])) + NEW_SLOT * new + REWRITE * rewrites + log_gas(receipt)
    gas = int(receipt["gasUsed"])
    return {"gas": gas, "minimum": minimum, "ratio": round(gas / minimum, 3)}


def scenario(eligible: int) -> dict[str, Any]:
    chain = embedded_chain(eligible + 3)
    deployer, proposer, keeper, *validators = chain.dev_keys
    founders = [
        Admit(proposer.address, Role.MEMBER, os.urandom(32), "proposer"),
        *(
            Admit(v.address, Role.MEMBER | Role.VALIDATOR, os.urandom(32), f"hospital-{i}")
            for i, v in enumerate(validators)
        ),
    ]
    client, _ = LedgerClient.deploy(
        chain,
        deployer,
        variant=Variant.B,
        genesis_hash=os.urandom(32),
        genesis_uri="g",
        parameters=Parameters(os.urandom(32), general_timeout=600, voting_timeout=600, min_validators=1),
        founders=founders,
    )
    by_address = {v.address: v for v in validators}
    uri = "vault://sha256/" + "ab" * 32  # a realistic content address

    def submit() -> Any:
        return client.submit(proposer, client.head(), os.urandom(32), uri, os.urandom(32))

    s = submit()
    out: dict[str, Any] = {"eligible": eligible, "submit": measured(chain, s.tx.tx_hash, "submit")}
    opened = client.open_candidate(by_address[s.general], s.model_id, True, os.urandom(32))
    out["open"] = measured(chain, opened.tx_hash, "open")
    needed = approvals_needed(eligible)
    votes = [client.vote(v, s.model_id, True, 0.912345, 0.876543, os.urandom(32)) for v in validators[:needed]]
    out["vote_first"] = measured(chain, votes[0].tx.tx_hash, "vote_first")
    if needed > 2:
        out["vote_middle"] = measured(chain, votes[needed // 2].tx.tx_hash, "vote_middle")
    out["vote_deciding"] = measured(chain, votes[-1].tx.tx_hash, "vote_deciding")
    round_gas = s.tx.gas_used + opened.gas_used + sum(v.tx.gas_used for v in votes)
    round_min = (
        out["submit"]["minimum"]
        + out["open"]["minimum"]
        + sum(
            measured(
                chain, v.tx.tx_hash, "vote_first" if i == 0 else "vote_deciding" if i == needed - 1 else "vote_middle"
            )["minimum"]
            for i, v in enumerate(votes)
        )
    )
    out["committed_round"] = {
        "gas": round_gas,
        "minimum": round_min,
        "ratio": round(round_gas / round_min, 3),
        "votes_needed": needed,
    }
    late = submit()
    chain.advance_time(601)
    out["reassign"] = measured(chain, client.reassign_general(keeper, late.model_id).tx_hash, "reassign")
    chain.advance_time(601)
    out["expire"] = measured(chain, client.expire(keeper, late.model_id).tx_hash, "expire")
    return out


def linear_fit(xs: list[int], ys: list[int]) -> dict[str, float]:
    n, mx, my = len(xs), sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    intercept = my - slope * mx
    ss_res = sum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys, strict=True))
    ss_tot = sum((y - my) ** 2 for y in ys)
    return {"gas_per_vote": round(slope), "fixed_gas": round(intercept), "r2": round(1 - ss_res / ss_tot, 6), "n": n}


def main() -> None:
    rows = [scenario(e) for e in (3, 6, 12, 24, 48)]
    six = next(r for r in rows if r["eligible"] == 6)
    worst_vote = max(r[k]["gas"] for r in rows for k in ("vote_first", "vote_middle", "vote_deciding") if k in r)
    fit = linear_fit([r["committed_round"]["votes_needed"] for r in rows], [r["committed_round"]["gas"] for r in rows])
    report = {
        "benchmark": "gas",
        "chain": "embedded (py-evm)",
        "scenarios": rows,
        "round_growth": fit,
        "targets": {
            "vote_max": {"value": worst_vote, "target": TARGETS["vote"], "ok": worst_vote <= TARGETS["vote"]},
            "submit_max": {
                "value": max(r["submit"]["gas"] for r in rows),
                "target": TARGETS["submit"],
                "ok": max(r["submit"]["gas"] for r in rows) <= TARGETS["submit"],
            },
            "round_6_validators": {
                "value": six["committed_round"]["gas"],
                "target": TARGETS["round_6"],
                "ok": six["committed_round"]["gas"] <= TARGETS["round_6"],
            },
            "round_growth_linear": {"r2": fit["r2"], "ok": fit["r2"] >= 0.999},
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
