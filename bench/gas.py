"""Gas of the Coalition contract (v2): a committed round decided by signed votes beside the same round decided by
one vote transaction per validator, and the governance of an admission. Prints JSON.

Rounds: for eligible = 3, 6, 12, 24, 48 validators (the proposer is a member only, so all of them are eligible) on
the embedded chain: submit, open, and either `decide` carrying the signatures that decide (two thirds) or those
votes as transactions. Each transaction beside its EIP-cost minimum: 21000 base, its own calldata (16 gas per
non-zero byte, 4 per zero byte), the storage the protocol must write (22100 per new slot, 5000 per rewrite: see
REQUIRED), 3000 per signature recovered, and the logs it emits (375 + 375 per topic + 8 per data byte).

Governance: a whole admission (propose, ballots up to two thirds of the active members, execute) for
4, 6, 12 and 24 members, and its growth per member.

Privacy: `submit` charging epsilon to the proposer's budget (under a cap) beside `submit` charging nothing, in one
coalition, alternately: what the budget check and its `PrivacySpent` event add (`--only privacy` runs just that).

Export: `recordExport`, a member recording that it took a committed model out (`--only export` runs just that).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from eth_account.signers.local import LocalAccount

from tclearn.ledger.chain import Chain, embedded_chain
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.governance import Admit, Parameters
from tclearn.ledger.votes import sign_vote
from tclearn.protocol import approvals_needed
from tclearn.types import Role, Variant

NEW_SLOT, REWRITE, ECRECOVER = 22_100, 5_000, 3_000
# (new slots, rewritten slots) any implementation must write: submit stores the model hash, the candidate's
# state record and the hash-uniqueness index, and bumps the model count; open rewrites the state record; a vote
# records who voted and the tally (the first vote of a candidate needs a new slot for "who voted"), the deciding
# one also moves head; a decide rewrites the tally and head (no vote can follow a decision: nothing to record).
REQUIRED = {
    "submit": (3, 1),
    "submit_charged": (3, 2),  # and the proposer's spending, in its member slot
    "export": (0, 1),  # the export count (everything else is in the Exported log)
    "open": (0, 1),
    "vote_first": (1, 1),
    "vote_middle": (0, 2),
    "vote_deciding": (0, 3),
    "decide": (0, 2),
    "propose": (3, 1),  # the action's hash, the tally, the ballot bits; the proposal count
    "ballot": (0, 2),
    "execute_admit": (5, 4),  # record, key, name, list and validator entries; 2 lengths, the count, the state
}
TARGETS = {
    "round_6": 250_000,
    "per_validator": 10_000,
    "round_48": 700_000,
    "admission_6": 400_000,
    "budget_check": 10_000,
}
CHARGE = 1_234_567  # epsilon 1.234567 in millionths: a realistic charge (three non-zero calldata bytes)
URI = "vault://sha256/" + "ab" * 32  # a realistic content address


def calldata_gas(data: bytes) -> int:
    return sum(16 if b else 4 for b in data)


def log_gas(receipt: Any) -> int:
    return sum(375 + 375 * len(log["topics"]) + 8 * len(bytes(log["data"])) for log in receipt["logs"])


def measured(chain: Chain, tx_hash: str, op: str, signatures: int = 0) -> dict[str, Any]:
    tx, receipt = chain.w3.eth.get_transaction(tx_hash), chain.w3.eth.get_transaction_receipt(tx_hash)
    new, rewrites = REQUIRED[op]
    minimum = (
        21_000
        + calldata_gas(bytes(tx["input"]))
        + NEW_SLOT * new
        + REWRITE * rewrites
        + ECRECOVER * signatures
        + log_gas(receipt)
    )
    gas = int(receipt["gasUsed"])
    return {"gas": gas, "minimum": minimum, "ratio": round(gas / minimum, 3)}


def coalition(chain: Chain, members: list[Admit], epsilon_cap: int = 0) -> LedgerClient:
    client, _ = LedgerClient.deploy(
        chain,
        chain.dev_keys[0],
        variant=Variant.B,
        genesis_hash=os.urandom(32),
        genesis_uri="g",
        parameters=Parameters(os.urandom(32), general_timeout=600, voting_timeout=600, epsilon_cap=epsilon_cap),
        founders=members,
    )
    return client


def round_scenario(eligible: int) -> dict[str, Any]:
    chain = embedded_chain(eligible + 2)
    _, proposer, *validators = chain.dev_keys
    founders = [Admit(proposer.address, Role.MEMBER, os.urandom(32), "proposer")]
    founders += [
        Admit(v.address, Role.MEMBER | Role.VALIDATOR, os.urandom(32), f"h{i}") for i, v in enumerate(validators)
    ]
    client = coalition(chain, founders)
    by_address: dict[str, LocalAccount] = {v.address: v for v in validators}
    needed = approvals_needed(eligible)
    out: dict[str, Any] = {"eligible": eligible, "votes_needed": needed}

    def submit_and_open() -> tuple[int, int, int, bytes]:
        s = client.submit(proposer, client.head(), os.urandom(32), URI, os.urandom(32))
        opened = client.open_candidate(by_address[s.general], s.model_id, True, os.urandom(32))
        out.setdefault("submit", measured(chain, s.tx.tx_hash, "submit"))
        out.setdefault("open", measured(chain, opened.tx_hash, "open"))
        return s.model_id, s.tx.gas_used, opened.gas_used, client.get_model(s.model_id, with_uri=False).model_hash

    model_id, submit_gas, open_gas, model_hash = submit_and_open()
    signed = [
        sign_vote(v, client.domain, model_id, model_hash, True, 0.912345, 0.876543, os.urandom(32))
        for v in validators[:needed]
    ]
    decided = client.decide(proposer, model_id, signed)
    out["decide"] = measured(chain, decided.tx.tx_hash, "decide", signatures=needed)
    out["signed_round"] = {"gas": submit_gas + open_gas + decided.tx.gas_used, "transactions": 3}

    model_id, submit_gas, open_gas, _ = submit_and_open()
    votes = [client.vote(v, model_id, True, 0.912345, 0.876543, os.urandom(32)) for v in validators[:needed]]
    out["vote_first"] = measured(chain, votes[0].tx.tx_hash, "vote_first")
    out["vote_deciding"] = measured(chain, votes[-1].tx.tx_hash, "vote_deciding")
    out["direct_round"] = {"gas": submit_gas + open_gas + sum(v.tx.gas_used for v in votes), "transactions": 2 + needed}
    out["signed_over_direct"] = round(out["signed_round"]["gas"] / out["direct_round"]["gas"], 3)
    return out


def admission_scenario(members: int) -> dict[str, Any]:
    chain = embedded_chain(members + 2)
    _, *accounts = chain.dev_keys
    founders = [
        Admit(a.address, Role.MEMBER | Role.VALIDATOR, os.urandom(32), f"hospital-{i}")
        for i, a in enumerate(accounts[:members])
    ]
    client = coalition(chain, founders)
    voters: list[LocalAccount] = accounts[:members]
    newcomer = accounts[members]
    action = Admit(newcomer.address, Role.MEMBER | Role.VALIDATOR, os.urandom(32), "hospital-new")
    proposal = client.propose(voters[0], action)
    proposed = next(e for e in client.events() if e.name == "Proposed" and e.args["proposal"] == proposal.id)
    ballots = [client.ballot(v, proposal.id, True) for v in voters[1 : proposal.needed]]
    executed = client.execute(voters[0], proposal.id)
    out: dict[str, Any] = {
        "members": members,
        "approvals_needed": proposal.needed,
        "propose": measured(chain, proposed.tx_hash, "propose"),
        "ballot": measured(chain, ballots[-1].tx_hash, "ballot") if ballots else None,
        "execute": measured(chain, executed.tx_hash, "execute_admit"),
    }
    out["admission"] = {
        "gas": out["propose"]["gas"] + sum(b.gas_used for b in ballots) + executed.gas_used,
        "transactions": 2 + len(ballots),
    }
    return out


def privacy_scenario(pairs: int = 5, validators: int = 6) -> dict[str, Any]:
    """`submit` with a charge and without, alternately, `pairs` times each in one capped coalition (every one
    a sibling on the genesis, so nothing but the charge differs); the median of each and their difference."""
    chain = embedded_chain(validators + 2)
    _, proposer, *others = chain.dev_keys
    founders = [Admit(proposer.address, Role.MEMBER, os.urandom(32), "proposer")]
    founders += [Admit(v.address, Role.MEMBER | Role.VALIDATOR, os.urandom(32), f"h{i}") for i, v in enumerate(others)]
    client = coalition(chain, founders, epsilon_cap=(2 * pairs + 1) * CHARGE)
    plain, charged = [], []
    for _ in range(pairs):
        for charge, runs in ((0, plain), (CHARGE, charged)):
            s = client.submit(proposer, client.head(), os.urandom(32), URI, os.urandom(32), charge)
            runs.append(s.tx.tx_hash)
    assert client.privacy_spent(proposer.address) == pairs * CHARGE, "every charged submission was counted"

    def median(tx_hashes: list[str], op: str) -> dict[str, Any]:
        runs = sorted((measured(chain, h, op) for h in tx_hashes), key=lambda m: int(m["gas"]))
        return runs[len(runs) // 2]

    without, with_charge = median(plain, "submit"), median(charged, "submit_charged")
    return {
        "charge": CHARGE,
        "submissions": 2 * pairs,
        "submit_without_charge": without,
        "submit_with_charge": with_charge,
        "budget_check_added": with_charge["gas"] - without["gas"],
    }


def export_scenario(exports: int = 5) -> dict[str, Any]:
    """`recordExport` of a committed model (the genesis) by a member, `exports` times; the median."""
    chain = embedded_chain(4)
    _, member, *others = chain.dev_keys
    founders = [Admit(a.address, Role.MEMBER | Role.VALIDATOR, os.urandom(32), f"h{i}") for i, a in enumerate(others)]
    client = coalition(chain, [Admit(member.address, Role.MEMBER, os.urandom(32), "exporter"), *founders])
    runs = [client.record_export(member, 0, os.urandom(32), os.urandom(32))[1].tx_hash for _ in range(exports)]
    assert [e.id for e in client.exports()] == list(range(exports)), "every export was recorded"
    measures = sorted((measured(chain, h, "export") for h in runs), key=lambda m: int(m["gas"]))
    return {"exports": exports, "record_export": measures[len(measures) // 2]}


def slope(xs: list[int], ys: list[int]) -> float:
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def target(value: float, limit: int) -> dict[str, Any]:
    return {"value": round(value), "target": limit, "ok": value <= limit}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["privacy", "export"], help="run one section only")
    only = parser.parse_args().only
    if only == "export":
        print(json.dumps({"benchmark": "gas", "chain": "embedded (py-evm)", "export": export_scenario()}, indent=2))
        return
    privacy = privacy_scenario()
    budget = target(privacy["budget_check_added"], TARGETS["budget_check"])
    if only == "privacy":
        print(json.dumps({"benchmark": "gas", "chain": "embedded (py-evm)", "privacy": privacy, "targets": {
            "budget_check_added": budget}}, indent=2))  # fmt: skip
        return
    rounds = [round_scenario(e) for e in (3, 6, 12, 24, 48)]
    admissions = [admission_scenario(m) for m in (4, 6, 12, 24)]
    by_eligible = {r["eligible"]: r for r in rounds}
    eligible = [r["eligible"] for r in rounds]
    per_validator = slope(eligible, [r["signed_round"]["gas"] for r in rounds])
    per_validator_direct = slope(eligible, [r["direct_round"]["gas"] for r in rounds])
    six = next(a for a in admissions if a["members"] == 6)
    report = {
        "benchmark": "gas",
        "chain": "embedded (py-evm)",
        "rounds": rounds,
        "admissions": admissions,
        "privacy": privacy,
        "export": export_scenario(),
        "growth": {
            "signed_round_per_validator": round(per_validator),
            "direct_round_per_validator": round(per_validator_direct),
            "admission_per_member": round(
                slope([a["members"] for a in admissions], [a["admission"]["gas"] for a in admissions])
            ),
        },
        "targets": {
            "round_6_validators": target(by_eligible[6]["signed_round"]["gas"], TARGETS["round_6"]),
            "per_extra_validator": target(per_validator, TARGETS["per_validator"]),
            "round_48_validators": target(by_eligible[48]["signed_round"]["gas"], TARGETS["round_48"]),
            "admission_6_members": target(six["admission"]["gas"], TARGETS["admission_6"]),
            "budget_check_added": budget,
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
