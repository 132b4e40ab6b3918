"""Hypothesis drives random submit/open/vote/reassign/expire/set-policy/time sequences against the contract and
checks every outcome (success or the named error) against a small pure-Python model of the protocol."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from tclearn.errors import ContractRevert
from tclearn.ledger.chain import embedded_chain
from tclearn.protocol import is_committed, is_rejected
from tclearn.types import ModelState as S
from tests.conftest import Coalition, deploy_coalition

VALIDATORS = 5  # hospitals[0..4] validate; hospitals[5] is a member only
TIMEOUT = 600


@dataclass
class Candidate:
    parent: int
    proposer: str
    general: str
    eligible: int
    state: S = S.SUBMITTED
    approvals: int = 0
    rejections: int = 0
    voters: set[str] = field(default_factory=set)
    deadline_epoch: int = 0  # the time epoch in which the current deadline was set


class ProtocolModel(RuleBasedStateMachine):
    @initialize()
    def deploy(self) -> None:
        self.co: Coalition = deploy_coalition(
            embedded_chain(12),
            validators=VALIDATORS,
            members=1,
            general_timeout=TIMEOUT,
            voting_timeout=TIMEOUT,
        )
        self.head = 0
        self.epoch = 0  # advanced by every jump in time longer than both timeouts
        self.candidates: dict[int, Candidate] = {}
        self.validators = {h.address for h in self.co.hospitals[:VALIDATORS]}
        self.policy = self.co.client.policy_hash()

    # ---- model helpers -------------------------------------------------------------------------------

    def _touch(self, cid: int) -> bool:
        """The contract's stale marking: True if touching `cid` just made (or found) it stale."""
        c = self.candidates[cid]
        if c.state in (S.SUBMITTED, S.OPEN) and c.parent != self.head:
            c.state = S.STALE
        return c.state == S.STALE

    def _expect(self, error: str | None, action: object) -> object:
        if error is None:
            return action()  # type: ignore[operator]
        try:
            action()  # type: ignore[operator]
        except ContractRevert as exc:
            assert exc.error == error, f"expected {error}, got {exc}"
            return None
        raise AssertionError(f"expected the contract to refuse with {error}")

    def _pick(self, data: st.DataObject) -> int | None:
        if not self.candidates:
            return None
        return data.draw(st.sampled_from(sorted(self.candidates)))

    # ---- rules ---------------------------------------------------------------------------------------

    @rule(who=st.integers(0, VALIDATORS), stale_parent=st.booleans())
    def submit(self, who: int, stale_parent: bool) -> None:
        proposer = self.co.hospitals[who]
        parent = self.head + 1 + len(self.candidates) if stale_parent else self.head
        if parent != self.head:
            self._expect(
                "StaleParent",
                lambda: self.co.client.submit(proposer, parent, os.urandom(32), "u", os.urandom(32)),
            )
            return
        s = self.co.client.submit(proposer, parent, os.urandom(32), "u", os.urandom(32))
        expected_eligible = VALIDATORS - (1 if proposer.address in self.validators else 0)
        assert s.eligible == expected_eligible
        assert s.general in self.validators and s.general != proposer.address
        self.candidates[s.model_id] = Candidate(
            parent, proposer.address, s.general, s.eligible, deadline_epoch=self.epoch
        )

    @rule(data=st.data(), ok=st.booleans(), as_general=st.booleans())
    def open(self, data: st.DataObject, ok: bool, as_general: bool) -> None:
        cid = self._pick(data)
        if cid is None:
            return
        c = self.candidates[cid]
        caller = self.co.account(c.general) if as_general else self.co.hospitals[VALIDATORS]
        call = lambda: self.co.client.open_candidate(caller, cid, ok, os.urandom(32))  # noqa: E731
        if self._touch(cid):
            self._expect("Stale", call)
        elif c.state != S.SUBMITTED:
            self._expect("WrongState", call)
        elif caller.address != c.general:
            self._expect("NotGeneral", call)
        elif self.epoch > c.deadline_epoch:
            self._expect("DeadlinePassed", call)
        else:
            call()
            c.state, c.deadline_epoch = (S.OPEN if ok else S.REJECTED), self.epoch

    @rule(data=st.data(), who=st.integers(0, VALIDATORS), approve=st.booleans())
    def vote(self, data: st.DataObject, who: int, approve: bool) -> None:
        cid = self._pick(data)
        if cid is None:
            return
        c, voter = self.candidates[cid], self.co.hospitals[who]
        call = lambda: self.co.client.vote(voter, cid, approve, 0.5, 0.5, os.urandom(32))  # noqa: E731
        if self._touch(cid):
            self._expect("Stale", call)
        elif c.state != S.OPEN:
            self._expect("WrongState", call)
        elif self.epoch > c.deadline_epoch:
            self._expect("DeadlinePassed", call)
        elif voter.address not in self.validators:
            self._expect("NotValidator", call)
        elif voter.address == c.proposer:
            self._expect("ProposerCannotVote", call)
        elif voter.address in c.voters:
            self._expect("AlreadyVoted", call)
        else:
            call()
            c.voters.add(voter.address)
            if approve:
                c.approvals += 1
                if is_committed(c.approvals, c.eligible):
                    c.state, self.head = S.COMMITTED, cid
            else:
                c.rejections += 1
                if is_rejected(c.rejections, c.eligible):
                    c.state = S.REJECTED

    @rule(data=st.data())
    def reassign(self, data: st.DataObject) -> None:
        cid = self._pick(data)
        if cid is None:
            return
        c = self.candidates[cid]
        call = lambda: self.co.client.reassign_general(self.co.spare[0], cid)  # noqa: E731
        if self._touch(cid):
            self._expect("Stale", call)
        elif c.state != S.SUBMITTED:
            self._expect("WrongState", call)
        elif self.epoch <= c.deadline_epoch:
            self._expect("DeadlineNotReached", call)
        else:
            call()  # 4 or 5 eligible validators: another general always exists
            general = self.co.client.get_model(cid, with_uri=False).general
            assert general not in (c.general, c.proposer) and general in self.validators
            c.general, c.deadline_epoch = general, self.epoch

    @rule(data=st.data())
    def expire(self, data: st.DataObject) -> None:
        cid = self._pick(data)
        if cid is None:
            return
        c = self.candidates[cid]
        call = lambda: self.co.client.expire(self.co.spare[0], cid)  # noqa: E731
        if self._touch(cid):
            self._expect("Stale", call)
        elif c.state not in (S.SUBMITTED, S.OPEN):
            self._expect("WrongState", call)
        elif self.epoch <= c.deadline_epoch:
            self._expect("DeadlineNotReached", call)
        else:
            call()
            c.state = S.EXPIRED

    @rule(by_admin=st.booleans(), zero=st.booleans())
    def set_policy(self, by_admin: bool, zero: bool) -> None:
        """The admin declares a new acceptance policy; anyone else, or a zero hash, is refused and changes nothing."""
        caller = self.co.admin if by_admin else self.co.hospitals[0]
        digest = b"\0" * 32 if zero else os.urandom(32)
        error = "NotAdmin" if not by_admin else "ZeroHash" if zero else None
        self._expect(error, lambda: self.co.client.set_policy(caller, digest))
        if error is None:
            self.policy = digest

    @rule()
    def time_passes(self) -> None:
        self.co.chain.advance_time(TIMEOUT + 100)
        self.epoch += 1

    # ---- invariants ----------------------------------------------------------------------------------

    @invariant()
    def contract_matches_model(self) -> None:
        if not hasattr(self, "co"):
            return
        client = self.co.client
        assert client.head() == self.head and client.policy_hash() == self.policy
        for cid, c in self.candidates.items():
            m = client.get_model(cid, with_uri=False)
            assert (m.state, m.approvals, m.rejections, m.general) == (
                c.state,
                c.approvals,
                c.rejections,
                c.general,
            ), cid


TestProtocolModel = ProtocolModel.TestCase
TestProtocolModel.settings = settings(
    max_examples=20, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
