"""One suite for every `Ledger`: the Coalition contract on the embedded chain and the `InMemoryLedger`.

Every test runs on both backends with the same assertions, refusals included (error name, arguments and
message); that the in-memory ledger passes them is what makes it a faithful stand-in for the contract.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from tclearn.errors import ContractRevert
from tclearn.ledger.accounts import dev_accounts
from tclearn.ledger.chain import embedded_chain
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.history import rebuild, to_json
from tclearn.ledger.ledger import Ledger
from tclearn.ledger.memory import InMemoryLedger, MemoryChain
from tclearn.types import ModelState, RejectReason, Role, Variant

TIMEOUT = 600
ACCOUNTS = 8
BACKENDS = ["contract", "memory"]


def digest(label: str) -> bytes:
    """A fixed 32-byte hash per label, the same on both backends."""
    return hashlib.sha256(label.encode()).digest()


@dataclass
class Coalition:
    """A coalition of four validating hospitals on one backend, and the way to move its clock."""

    ledger: Ledger
    admin: LocalAccount
    hospitals: list[LocalAccount]
    spare: list[LocalAccount]
    advance: Callable[[int], None]

    def account(self, address: str) -> LocalAccount:
        return next(a for a in [self.admin, *self.hospitals, *self.spare] if a.address == address)

    def submit(self, proposer: LocalAccount, label: str) -> int:
        ledger = self.ledger
        return ledger.submit(
            proposer, ledger.head(), digest(label), f"vault://{label}", digest(label + "/meta")
        ).model_id

    def general(self, model_id: int) -> LocalAccount:
        return self.account(self.ledger.get_model(model_id, with_uri=False).general)

    def open(self, model_id: int, ok: bool = True) -> None:
        self.ledger.open_candidate(self.general(model_id), model_id, ok, digest(f"report/{model_id}"))

    def voters(self, model_id: int) -> list[LocalAccount]:
        proposer = self.ledger.get_model(model_id, with_uri=False).proposer
        return [h for h in self.hospitals if h.address != proposer]

    def vote(self, voter: LocalAccount, model_id: int, approve: bool) -> ModelState:
        evidence = digest(f"evidence/{model_id}/{voter.address}")
        return self.ledger.vote(voter, model_id, approve, 0.9 if approve else 0.1, 0.8, evidence).state


def found(backend: str) -> Coalition:
    """Deploys a coalition on `backend` and registers four validating hospitals."""
    settings: dict[str, Any] = {
        "variant": Variant.B,
        "genesis_hash": digest("genesis"),
        "genesis_uri": "vault://genesis",
        "policy_hash": digest("policy"),
        "general_timeout": TIMEOUT,
        "voting_timeout": TIMEOUT,
    }
    ledger: Ledger
    if backend == "contract":
        chain = embedded_chain(ACCOUNTS)
        accounts, advance = chain.dev_keys, chain.advance_time
        ledger, _ = LedgerClient.deploy(chain, accounts[0], **settings)
    else:
        memory = MemoryChain()
        accounts, advance = dev_accounts(ACCOUNTS), memory.advance_time
        ledger, _ = InMemoryLedger.deploy(memory, accounts[0], **settings)
    admin, hospitals, spare = accounts[0], accounts[1:5], accounts[5:]
    for i, h in enumerate(hospitals):
        ledger.register_member(admin, h.address, Role.MEMBER | Role.VALIDATOR, digest(f"key/{i}"), f"hospital-{i}")
    return Coalition(ledger, admin, hospitals, spare, advance)


@pytest.fixture(params=BACKENDS)
def co(request: pytest.FixtureRequest) -> Coalition:
    return found(request.param)


def refusal(call: Callable[[], object], co: Coalition) -> ContractRevert:
    """The refusal `call` raises; checks that it left the ledger's history untouched."""
    before = len(co.ledger.events())
    with pytest.raises(ContractRevert) as info:
        call()
    assert len(co.ledger.events()) == before, "a refused call left events behind"
    return info.value


# ---- rounds ---------------------------------------------------------------------------------------------


def test_a_round_commits_with_two_thirds_and_moves_the_head(co: Coalition) -> None:
    ledger, proposer = co.ledger, co.hospitals[0]
    sub = ledger.submit(proposer, 0, digest("m1"), "vault://m1", digest("m1/meta"))
    assert (sub.model_id, sub.eligible) == (1, 3)
    assert sub.general in [h.address for h in co.hospitals[1:]]
    assert sub.general_deadline == ledger.chain.timestamp() + TIMEOUT
    assert sub.tx.has("Submitted") and sub.tx.gas_used >= 0 and sub.tx.tx_hash.startswith("0x")
    co.open(1)
    opened = ledger.get_model(1)
    assert (opened.state, opened.uri, opened.proposer, opened.parent_id) == (
        ModelState.OPEN,
        "vault://m1",
        proposer.address,
        0,
    )
    first, second, third = co.voters(1)
    assert co.vote(first, 1, True) is ModelState.OPEN
    assert ledger.has_voted(1, first.address) and not ledger.has_voted(1, second.address)
    assert co.vote(second, 1, True) is ModelState.COMMITTED
    record = ledger.get_model(1, with_uri=False)
    assert (ledger.head(), record.state, record.approvals, record.rejections, record.uri) == (
        1,
        ModelState.COMMITTED,
        2,
        0,
        None,
    )
    late = refusal(lambda: co.vote(third, 1, True), co)
    assert (late.error, late.error_args) == ("WrongState", {"id": 1, "state": "committed"})


def test_votes_reject_once_two_thirds_can_no_longer_be_reached(co: Coalition) -> None:
    mid = co.submit(co.hospitals[1], "m1")
    co.open(mid)
    assert [co.vote(v, mid, False) for v in co.voters(mid)[:2]] == [ModelState.OPEN, ModelState.REJECTED]
    record = co.ledger.get_model(mid)
    assert (record.state, record.rejections, co.ledger.head()) == (ModelState.REJECTED, 2, 0)
    assert rebuild(co.ledger.events()).candidates[mid].reject_reason is RejectReason.VOTES


def test_the_general_rejects_a_broken_candidate(co: Coalition) -> None:
    mid = co.submit(co.hospitals[0], "m1")
    tx = co.ledger.open_candidate(co.general(mid), mid, False, digest("broken"))
    rejected = tx.event("Rejected")
    assert rejected is not None
    assert (rejected.args["reason"], rejected.args["evidenceHash"]) == (int(RejectReason.INTEGRITY), digest("broken"))
    assert co.ledger.get_model(mid).state is ModelState.REJECTED


# ---- refusals -------------------------------------------------------------------------------------------


def test_submit_refusals(co: Coalition) -> None:
    ledger, member = co.ledger, co.hospitals[0]
    stale = refusal(lambda: ledger.submit(member, 5, digest("a"), "u", digest("b")), co)
    assert (stale.error, stale.error_args) == ("StaleParent", {"parentId": 5, "head": 0})
    assert "parent model 5 is not the head (0)" in str(stale)
    co.submit(member, "m1")
    duplicate = refusal(lambda: ledger.submit(co.hospitals[1], 0, digest("m1"), "u", digest("b")), co)
    assert (duplicate.error, duplicate.error_args) == (
        "DuplicateModel",
        {"modelHash": "0x" + digest("m1").hex(), "existingId": 1},
    )
    outsider = refusal(lambda: ledger.submit(co.spare[0], 0, digest("c"), "u", digest("d")), co)
    assert (outsider.error, outsider.error_args) == ("NotMember", {"account": co.spare[0].address})
    zero = refusal(lambda: ledger.submit(member, 0, digest("e"), "u", b"\0" * 32), co)
    assert zero.error == "ZeroHash"
    unknown = refusal(lambda: ledger.get_model(99), co)
    assert (unknown.error, str(unknown)) == ("UnknownModel", "getModel refused (UnknownModel): no model with id 99")


def test_vote_refusals(co: Coalition) -> None:
    ledger, proposer = co.ledger, co.hospitals[0]
    mid = co.submit(proposer, "m1")
    early = refusal(lambda: co.vote(co.voters(mid)[0], mid, True), co)
    assert (early.error, early.error_args) == ("WrongState", {"id": mid, "state": "submitted"})
    co.open(mid)
    own = refusal(lambda: co.vote(proposer, mid, True), co)
    assert (own.error, own.error_args) == ("ProposerCannotVote", {"proposer": proposer.address, "id": mid})
    voter = co.voters(mid)[0]
    co.vote(voter, mid, False)
    twice = refusal(lambda: co.vote(voter, mid, True), co)
    assert str(twice) == f"vote on {mid} refused (AlreadyVoted): {voter.address} has already voted on candidate {mid}"
    outsider = refusal(lambda: co.vote(co.spare[0], mid, True), co)
    assert (outsider.error, outsider.error_args) == ("NotValidator", {"account": co.spare[0].address})
    ledger.register_member(co.admin, co.spare[0].address, Role.VALIDATOR)
    newcomer = refusal(lambda: co.vote(co.spare[0], mid, True), co)
    assert (newcomer.error, newcomer.error_args) == ("NotEligible", {"validator": co.spare[0].address, "id": mid})


def test_only_the_general_opens_and_only_before_its_deadline(co: Coalition) -> None:
    mid = co.submit(co.hospitals[0], "m1")
    general = co.general(mid)
    other = next(v for v in co.voters(mid) if v.address != general.address)
    wrong = refusal(lambda: co.ledger.open_candidate(other, mid, True, digest("r")), co)
    assert (wrong.error, wrong.error_args) == ("NotGeneral", {"caller": other.address, "general": general.address})
    co.advance(TIMEOUT + 1)
    late = refusal(lambda: co.open(mid), co)
    assert late.error == "DeadlinePassed" and late.error_args["id"] == mid


# ---- deadlines ------------------------------------------------------------------------------------------


def test_expire_after_the_deadline_only(co: Coalition) -> None:
    ledger, keeper = co.ledger, co.spare[0]
    waiting = co.submit(co.hospitals[0], "m1")
    early = refusal(lambda: ledger.expire(keeper, waiting), co)
    assert early.error == "DeadlineNotReached"
    assert early.error_args["deadline"] == ledger.get_model(waiting).general_deadline
    co.advance(TIMEOUT + 1)
    assert ledger.expire(keeper, waiting).has("Expired")
    assert ledger.get_model(waiting).state is ModelState.EXPIRED
    again = refusal(lambda: ledger.expire(keeper, waiting), co)
    assert (again.error, again.error_args) == ("WrongState", {"id": waiting, "state": "expired"})


def test_a_silent_general_is_replaced(co: Coalition) -> None:
    ledger, keeper, proposer = co.ledger, co.spare[0], co.hospitals[0]
    mid = co.submit(proposer, "m1")
    first = co.general(mid)
    assert refusal(lambda: ledger.reassign_general(keeper, mid), co).error == "DeadlineNotReached"
    co.advance(TIMEOUT + 1)
    tx = ledger.reassign_general(keeper, mid)
    reassigned = tx.event("GeneralReassigned")
    assert reassigned is not None and reassigned.args["previousGeneral"] == first.address
    second = co.general(mid)
    assert reassigned.args["general"] == second.address and second.address not in (first.address, proposer.address)
    assert ledger.get_model(mid).general_deadline == ledger.chain.timestamp() + TIMEOUT
    assert refusal(lambda: ledger.open_candidate(first, mid, True, digest("r")), co).error == "NotGeneral"
    co.open(mid)
    assert ledger.get_model(mid).state is ModelState.OPEN


def test_siblings_go_stale_when_one_commits(co: Coalition) -> None:
    ledger = co.ledger
    winner, loser, opened = (
        co.submit(co.hospitals[0], "a"),
        co.submit(co.hospitals[1], "b"),
        co.submit(co.hospitals[2], "c"),
    )
    co.open(winner)
    co.open(opened)
    for v in co.voters(winner)[:2]:
        co.vote(v, winner, True)
    stale = refusal_with_events(lambda: co.open(loser), co)
    assert (stale.error, stale.error_args) == ("Stale", {"id": loser})
    voter = co.voters(opened)[0]
    assert refusal_with_events(lambda: co.vote(voter, opened, True), co).error == "Stale"
    assert [ledger.get_model(i).state for i in (winner, loser, opened)] == [
        ModelState.COMMITTED,
        ModelState.STALE,
        ModelState.STALE,
    ]
    assert ledger.mark_stale(co.spare[0], loser).events == ()
    assert [e.args["id"] for e in ledger.events() if e.name == "Staled"] == [loser, opened]
    late = refusal(lambda: ledger.submit(co.hospitals[3], 0, digest("d"), "u", digest("e")), co)
    assert (late.error, late.error_args) == ("StaleParent", {"parentId": 0, "head": winner})


def refusal_with_events(call: Callable[[], object], co: Coalition) -> ContractRevert:
    """A call refused as `Stale`: the transaction went through (it marked the candidate) and says so."""
    before = len(co.ledger.events())
    with pytest.raises(ContractRevert) as info:
        call()
    assert [e.name for e in co.ledger.events()[before:]] == ["Staled"]
    return info.value


# ---- the acceptance policy --------------------------------------------------------------------------------


def test_the_policy_is_declared_at_deployment_and_changed_by_the_admin_only(co: Coalition) -> None:
    ledger = co.ledger
    assert ledger.policy_hash() == digest("policy")
    assert [e.args["hash"] for e in ledger.events() if e.name == "PolicyChanged"] == [digest("policy")]
    tx = ledger.set_policy(co.admin, digest("policy/2"))
    changed = tx.event("PolicyChanged")
    assert changed is not None and changed.args == {"hash": digest("policy/2")}
    assert ledger.policy_hash() == digest("policy/2")
    refused = refusal(lambda: ledger.set_policy(co.hospitals[0], digest("policy/3")), co)
    assert (refused.error, refused.error_args) == ("NotAdmin", {"caller": co.hospitals[0].address})
    assert refusal(lambda: ledger.set_policy(co.admin, b"\0" * 32), co).error == "ZeroHash"
    assert ledger.policy_hash() == digest("policy/2")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_coalition_without_a_policy_is_refused(backend: str) -> None:
    accounts = dev_accounts(1)
    settings: dict[str, Any] = {"variant": Variant.A, "genesis_hash": digest("genesis"), "policy_hash": b"\0" * 32}
    with pytest.raises(ContractRevert) as info:
        if backend == "contract":
            chain = embedded_chain(1)
            LedgerClient.deploy(chain, chain.dev_keys[0], genesis_uri="g", **settings)
        else:
            InMemoryLedger.deploy(MemoryChain(), accounts[0], **settings)
    assert info.value.error == "ZeroHash"


# ---- history ----------------------------------------------------------------------------------------------


def play(co: Coalition) -> None:
    """A history with every outcome: committed, rejected twice, stale, expired, reassigned, a role change, and a
    new acceptance policy from model 2 on."""
    h, keeper = co.hospitals, co.spare[0]
    committed = co.submit(h[0], "committed")
    co.open(committed)
    for v in co.voters(committed)[:2]:
        co.vote(v, committed, True)
    co.ledger.set_policy(co.admin, digest("policy/2"))
    co.open(co.submit(h[1], "broken"), ok=False)
    voted_down = co.submit(h[2], "voted-down")
    co.open(voted_down)
    for v in co.voters(voted_down)[:2]:
        co.vote(v, voted_down, False)
    sibling, doomed = co.submit(h[3], "sibling"), co.submit(h[0], "doomed")
    co.advance(TIMEOUT + 1)
    co.ledger.reassign_general(keeper, sibling)
    co.open(sibling)
    for v in co.voters(sibling)[:2]:
        co.vote(v, sibling, True)
    co.ledger.mark_stale(keeper, doomed)
    expiring = co.submit(h[1], "expiring")
    co.advance(TIMEOUT + 1)
    co.ledger.expire(keeper, expiring)
    co.ledger.set_roles(co.admin, h[3].address, Role.MEMBER)


def test_history_rebuilt_from_events_matches_the_views(co: Coalition) -> None:
    play(co)
    history, ledger = rebuild(co.ledger.events()), co.ledger
    assert history.head == ledger.head() == 4 and history.lineage() == [0, 1, 4]
    for mid in range(ledger.model_count()):
        view, past = ledger.get_model(mid), history.candidates[mid]
        assert (past.state, past.approvals, past.rejections, past.general, past.model_hash, past.uri) == (
            view.state,
            view.approvals,
            view.rejections,
            view.general,
            view.model_hash,
            view.uri,
        ), mid
    assert len(history.candidates[4].generals) == 2
    assert [history.candidates[i].reject_reason for i in (2, 3)] == [RejectReason.INTEGRITY, RejectReason.VOTES]
    assert history.candidates[5].state is ModelState.STALE and history.candidates[6].state is ModelState.EXPIRED
    assert history.candidates[3].votes[0].score_local == 0.8
    assert history.name_of(co.hospitals[0].address) == "hospital-0"
    assert [(p.hash, p.from_model) for p in history.policies] == [(digest("policy"), 0), (digest("policy/2"), 2)]
    assert history.policy_hash == ledger.policy_hash() == digest("policy/2")
    exported = json.loads(json.dumps(to_json(history)))
    assert exported["policy_hash"] == "0x" + digest("policy/2").hex()
    assert [m["state"] for m in exported["models"]][1] == "committed"
    assert {m.address: (m.roles, m.active, m.name) for m in ledger.members()} == {
        a: (m.roles, m.active, m.name) for a, m in history.members.items()
    }
    assert ledger.get_member(co.spare[0].address) is None


def comparable(co: Coalition) -> dict[str, Any]:
    """The history as JSON, without what may differ between backends: who was drawn, block numbers."""
    exported = to_json(rebuild(co.ledger.events()))
    for model in exported["models"]:
        del model["generals"], model["submitted_block"]
        for vote in model["votes"]:
            del vote["block"]
    return exported


def test_both_backends_write_the_same_history() -> None:
    contract, memory = found("contract"), found("memory")
    for co in (contract, memory):
        play(co)
    assert comparable(memory) == comparable(contract)
    assert [e.name for e in memory.ledger.events()] == [e.name for e in contract.ledger.events()]
