"""A ledger-level coalition simulation: real chain, real draws, votes and quorum; simulated scores.

Until the learning core and vault are wired into the coalition duties, this is what `tclearn demo`
runs: hospitals take turns submitting candidates (hashes of simulated increments), the drawn general
opens them, and every eligible validator votes by the acceptance policy on scores drawn around the
head's — honest increments improve slightly, a Byzantine member's poisoned ones are much worse.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from tclearn.coalition.policy import AcceptancePolicy, Scores
from tclearn.errors import ConfigError
from tclearn.ledger.chain import Chain
from tclearn.ledger.client import LedgerClient
from tclearn.types import ModelState, Role, Variant


@dataclass
class CandidateRow:
    id: int
    proposer: str
    byzantine: bool
    general: str
    state: str = "submitted"
    approvals: int = 0
    rejections: int = 0
    score_global: float = 0.0
    gas: int = 0


@dataclass
class SimulationResult:
    variant: str
    chain: str
    members: list[str]
    byzantine: list[str]
    candidates: list[CandidateRow] = field(default_factory=list)
    gas: dict[str, int] = field(default_factory=dict)
    head: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        rows = self.candidates
        return {
            "variant": self.variant,
            "chain": self.chain,
            "mode": "incremental",
            "metric": "simulated",
            "members": self.members,
            "validators": self.members,
            "byzantine": self.byzantine,
            "candidates": [asdict(r) for r in rows],
            "committed": sum(r.state == "committed" for r in rows),
            "rejected": sum(r.state == "rejected" for r in rows),
            "poisoned_submitted": sum(r.byzantine for r in rows),
            "poisoned_committed": sum(r.byzantine and r.state == "committed" for r in rows),
            "honest_rejected": sum(not r.byzantine and r.state == "rejected" for r in rows),
            "gas": self.gas,
            "head": self.head,
            "seconds": round(self.seconds, 2),
        }


def _digest(*parts: object) -> bytes:
    return hashlib.sha256(repr(parts).encode()).digest()


def check_arguments(members: int, byzantine: int) -> None:
    if members < 2:
        raise ConfigError(f"--members must be at least 2 (a proposer and a validator), got {members}")
    if not 0 <= byzantine < members:
        raise ConfigError(f"--byzantine must be between 0 and members - 1, got {byzantine}")


def simulate(
    chain: Chain,
    *,
    members: int = 4,
    byzantine: int = 1,
    rounds: int = 6,
    seed: int = 0,
    variant: Variant = Variant.B,
    policy: AcceptancePolicy | None = None,
    on_update: Callable[[list[CandidateRow]], None] | None = None,
) -> SimulationResult:
    check_arguments(members, byzantine)
    if len(chain.dev_keys) < members + 1:
        raise ConfigError(f"the chain has {len(chain.dev_keys)} funded keys; {members + 1} are needed")
    started, rng, policy = time.perf_counter(), random.Random(seed), policy or AcceptancePolicy()
    admin, hospitals = chain.dev_keys[0], chain.dev_keys[1 : members + 1]
    names: dict[str, str] = {h.address: f"hospital-{i + 1}" for i, h in enumerate(hospitals)}
    bad = {h.address for h in hospitals[members - byzantine :]}
    client, _ = LedgerClient.deploy(
        chain, admin, variant=variant, genesis_hash=_digest("genesis", seed), genesis_uri="vault://genesis"
    )
    for h in hospitals:
        client.register_member(
            admin, h.address, Role.MEMBER | Role.VALIDATOR, _digest("x25519", h.address), names[h.address]
        )
    result = SimulationResult(
        variant.name,
        "embedded" if chain.embedded else chain.kind,
        list(names.values()),
        [names[a] for a in sorted(bad)],
    )
    head_score = Scores(0.60, 0.55)
    gas: dict[str, list[int]] = {"submit": [], "open": [], "vote": [], "round": []}
    for r in range(rounds):
        proposer = hospitals[r % members]
        poisoned = proposer.address in bad
        true = (
            Scores(head_score.global_ - rng.uniform(0.2, 0.4), head_score.local - rng.uniform(0.2, 0.4))
            if poisoned
            else Scores(head_score.global_ + rng.uniform(0.0, 0.03), head_score.local + rng.uniform(0.0, 0.03))
        )
        s = client.submit(
            proposer, client.head(), _digest("model", seed, r), f"vault://sim/{r}", _digest("meta", seed, r)
        )
        row = CandidateRow(
            s.model_id,
            names[proposer.address],
            poisoned,
            names[s.general],
            score_global=round(true.global_, 4),
        )
        result.candidates.append(row)
        general = next(h for h in hospitals if h.address == s.general)
        opened = client.open_candidate(general, s.model_id, True, _digest("report", s.model_id))
        round_gas = s.tx.gas_used + opened.gas_used
        gas["submit"].append(s.tx.gas_used)
        gas["open"].append(opened.gas_used)
        for v in (h for h in hospitals if h.address != proposer.address):
            seen = Scores(true.global_ + rng.gauss(0, 0.003), true.local + rng.gauss(0, 0.01))
            approve = policy.accepts(seen, head_score)
            outcome = client.vote(
                v, s.model_id, approve, seen.global_, seen.local, _digest("evidence", s.model_id, v.address)
            )
            gas["vote"].append(outcome.tx.gas_used)
            round_gas += outcome.tx.gas_used
            row.approvals, row.rejections = row.approvals + approve, row.rejections + (not approve)
            row.state = outcome.state.name.lower()
            if on_update:
                on_update(result.candidates)
            if outcome.state != ModelState.OPEN:
                break
        row.gas = round_gas
        if on_update:
            on_update(result.candidates)
        if row.state == "committed":
            head_score = true
            gas["round"].append(round_gas)
    result.gas = {
        "submit": max(gas["submit"], default=0),
        "open": max(gas["open"], default=0),
        "vote": max(gas["vote"], default=0),
        "per_committed_round": round(sum(gas["round"]) / len(gas["round"])) if gas["round"] else 0,
    }
    result.head, result.seconds = client.head(), time.perf_counter() - started
    return result
