"""Each member's privacy budget from the logs, and the auditor's view of it: increments, the accountant's tighter
composition, and findings where the chain's charges are not what the candidates declare (by table on handmade
histories), then on a DP coalition's rounds on the embedded chain."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from functools import cache

import pytest

from tclearn.audit.privacy import (
    Budget,
    Increment,
    budgets,
    compose,
    declared_privacy,
    increment_findings,
    is_tighter,
    spending,
)
from tclearn.audit.verify import Severity, audit
from tclearn.coalition.context import Coalition
from tclearn.coalition.rounds import run_round
from tclearn.learning.privacy import Accountant, Mechanism, composed, epsilon_spent
from tclearn.ledger.governance import Parameters
from tclearn.ledger.history import (
    CandidateHistory,
    LedgerHistory,
    MemberHistory,
    ParametersDeclaration,
    PrivacyCharge,
    rebuild,
)
from tclearn.ledger.values import epsilon_of, epsilon_units
from tclearn.records import Privacy
from tclearn.types import ModelState, Role
from tests.coalition.fakes import chain_stub_coalition, stub_backend
from tests.coalition.test_privacy_rounds import DECLARED, EPSILON, POLICY

A, B, C = "0x" + "a" * 40, "0x" + "b" * 40, "0x" + "c" * 40
NOISE, RATE, STEPS, DELTA = 1.1, 0.1, 50, 1e-5


@cache
def spent(noise: float = NOISE) -> float:
    return epsilon_spent(Mechanism(noise, RATE, STEPS), DELTA, Accountant.RDP)


def privacy(noise: float = NOISE, **changes: object) -> Privacy:
    p = Privacy("dp-sgd", "rdp", "sample", noise, 1.0, RATE, STEPS, DELTA, spent(noise), 100)
    return dataclasses.replace(p, **changes)  # type: ignore[arg-type]


def history(cap: int, charges: list[tuple[int, str, int]], proposers: dict[int, str] | None = None) -> LedgerHistory:
    """Members A and B (C is never registered), a cap, and candidates 1.. charged as (model id, member, units)."""
    h = LedgerHistory()
    h.parameters.append(ParametersDeclaration(Parameters(b"\x01" * 32, epsilon_cap=cap), 0, 1))
    for address, name in ((A, "alpha"), (B, "beta")):
        h.members[address] = MemberHistory(address, name, Role.MEMBER | Role.VALIDATOR, True, b"")
    proposers = {**{m: who for m, who, _ in charges}, **(proposers or {})}
    for model_id, proposer in proposers.items():
        h.candidates[model_id] = CandidateHistory(
            model_id, 0, proposer, os.urandom(32), os.urandom(32), "", 2, [B], ModelState.COMMITTED, submitted_block=9
        )
    total: dict[str, int] = {}
    for model_id, member, units in charges:
        total[member] = total.get(member, 0) + units
        h.charges.append(PrivacyCharge(model_id, member, units, total[member], cap, 10 + model_id))
    return h


@pytest.mark.parametrize(
    ("cap", "charges", "expected"),
    [
        (3_000_000, [], {A: (0, 3_000_000), B: (0, 3_000_000)}),
        (3_000_000, [(1, A, 1_000_000), (2, A, 1_500_000)], {A: (2_500_000, 500_000), B: (0, 3_000_000)}),
        (0, [(1, B, 7_000_000)], {A: (0, None), B: (7_000_000, None)}),  # no cap: nothing is "left"
        (1_000_000, [(1, A, 2_000_000)], {A: (2_000_000, 0), B: (0, 1_000_000)}),  # a cap lowered below spending
    ],
    ids=["nothing spent", "spent and left", "no cap", "past a lowered cap"],
)
def test_budgets_are_the_plain_sums_of_the_charges_against_the_cap(
    cap: int, charges: list[tuple[int, str, int]], expected: dict[str, tuple[int, int | None]]
) -> None:
    found = budgets(history(cap, charges))
    assert {b.address: (b.spent_units, b.left_units) for b in found} == expected
    assert [b.name for b in found] == ["alpha", "beta"]
    view = found[0].view()
    assert view["cap"] == (epsilon_of(cap) if cap else None) and view["spent_units"] == found[0].spent_units


def test_an_account_charged_without_being_registered_still_has_its_budget() -> None:
    found = budgets(history(0, [(1, C, 5)]))
    assert found[-1] == Budget(C, C, 5, 0)


@pytest.mark.parametrize(
    ("privacies", "reason"),
    [
        ([privacy(), privacy(2.0)], None),
        ([privacy(), privacy(delta=1e-6)], "its increments differ in delta (1e-05, 1e-06)"),
        ([privacy(), privacy(accountant="prv")], "its increments differ in accountant (prv, rdp)"),
        ([privacy(), privacy(unit="patient")], "its increments differ in unit (patient, sample)"),
        ([privacy(), None], "no DP mechanism can be read for model(s) 2"),
        ([privacy(sample_rate=2.0)], "the accountant cannot compose them: the sample rate must be in (0, 1]"),
    ],
    ids=["composed", "deltas", "accountants", "units", "unreadable", "bad mechanism"],
)
def test_the_accountants_composition_or_why_there_is_none(privacies: list[Privacy | None], reason: str | None) -> None:
    found = compose(privacies, list(range(1, len(privacies) + 1)))
    if reason is None:
        known = [p for p in privacies if p is not None]
        exact = composed([Mechanism(p.noise_multiplier, p.sample_rate, p.steps) for p in known], DELTA)
        assert found.epsilon is not None and found.reason is None
        assert found.epsilon == pytest.approx(exact)
        assert found.epsilon < sum(p.epsilon for p in known)  # tighter than the chain's plain sum
        assert (found.delta, found.accountant) == (DELTA, "rdp")
    else:
        assert found.epsilon is None and found.reason is not None and found.reason.startswith(reason)


def test_a_member_without_increments_has_spent_nothing() -> None:
    assert compose([], []).epsilon == 0.0


def increment(charged: int, read: bool = True, p: Privacy | None = None, recomputed: float | None = None) -> Increment:
    return Increment(3, "committed", charged, 12, read, None if p is None else p.epsilon, recomputed)


HONEST = privacy()
UNITS = epsilon_units(HONEST.epsilon)


@pytest.mark.parametrize(
    ("inc", "p", "expected"),
    [
        (increment(UNITS, p=HONEST, recomputed=HONEST.epsilon), HONEST, []),
        (increment(UNITS // 2, p=HONEST, recomputed=HONEST.epsilon), HONEST, [(Severity.ERROR, "was charged")]),
        (increment(UNITS * 2, p=HONEST, recomputed=HONEST.epsilon), HONEST, [(Severity.WARNING, "was charged")]),
        (
            increment(0, p=HONEST, recomputed=HONEST.epsilon),
            HONEST,
            [(Severity.ERROR, "was charged epsilon 0.000000 on chain, not the")],
        ),
        (increment(UNITS), None, [(Severity.WARNING, "metadata declares no DP mechanism")]),
        (increment(UNITS, read=False), None, []),  # nothing to compare with: the audit names the missing blob
        (
            increment(epsilon_units(HONEST.epsilon / 4), p=dataclasses.replace(HONEST, epsilon=HONEST.epsilon / 4)),
            dataclasses.replace(HONEST, epsilon=HONEST.epsilon / 4),
            [],  # recomputed None here: see the next rows for the recomputation
        ),
    ],
    ids=["honest", "under-charged", "over-charged", "not charged", "charged without DP", "unread", "no figure"],
)
def test_findings_where_the_chains_charge_is_not_the_declared_epsilon(
    inc: Increment, p: Privacy | None, expected: list[tuple[Severity, str]]
) -> None:
    if p is not None and inc.recomputed is None and expected == []:
        found = increment_findings(inc, p)  # a mechanism no accountant takes is itself an error
        assert [(f.severity, f.what.split(" no ")[0]) for f in found] == [(Severity.ERROR, "declares a DP mechanism")]
        return
    found = increment_findings(inc, p)
    assert [(f.severity, f.model_id) for f in found] == [(s, 3) for s, _ in expected]
    assert all(what in f.what for f, (_, what) in zip(found, expected, strict=True))


@pytest.mark.parametrize(
    ("declared_epsilon", "severity"), [(spent() / 4, Severity.ERROR), (spent() * 4, Severity.WARNING)]
)
def test_a_declared_epsilon_that_is_not_what_its_mechanism_spends_is_found(
    declared_epsilon: float, severity: Severity
) -> None:
    p = privacy(epsilon=declared_epsilon)
    found = increment_findings(increment(epsilon_units(declared_epsilon), p=p, recomputed=spent()), p)
    assert [f.severity for f in found] == [severity]
    assert f"declares epsilon {declared_epsilon:.6g} but its mechanism spends {spent():.6g}" in found[0].what


def test_spending_lists_each_members_increments_and_their_composition() -> None:
    p1, p2 = privacy(), privacy(2.0)
    h = history(20_000_000, [(1, A, epsilon_units(p1.epsilon)), (2, A, epsilon_units(p2.epsilon))], {3: B, 4: B})
    # B's model 3 declares DP but was never charged; model 4's metadata is unreadable (absent from the mapping)
    members, findings = spending(h, {1: p1, 2: p2, 3: p1})
    alpha, beta = members
    assert [i.model_id for i in alpha.increments] == [1, 2] and [i.model_id for i in beta.increments] == [3]
    assert alpha.increments[0].recomputed == pytest.approx(p1.epsilon)
    assert alpha.composition.epsilon is not None and is_tighter(alpha)
    assert beta.budget.spent_units == 0 and beta.increments[0].charged == 0
    assert [(f.severity, f.model_id) for f in findings] == [(Severity.ERROR, 3)]
    view = alpha.view()
    assert view["increments"][1]["charged"] == epsilon_of(epsilon_units(p2.epsilon))  # type: ignore[index]
    assert view["increments"][1]["charged_units"] == epsilon_units(p2.epsilon)  # type: ignore[index]
    assert view["composition"]["epsilon"] == alpha.composition.epsilon  # type: ignore[index]


def test_a_charged_increment_whose_metadata_is_unreadable_leaves_no_composition() -> None:
    h = history(0, [(1, A, 10), (2, A, 20)])
    (alpha, _), findings = spending(h, {1: privacy()})
    assert (
        alpha.composition.epsilon is None and alpha.composition.reason == "no DP mechanism can be read for model(s) 2"
    )
    assert [i.metadata for i in alpha.increments] == [True, False]
    assert [f.model_id for f in findings] == [1]  # model 1 charged 10 millionths, not what it declares


@dataclass
class ChargedRun:
    """A DP coalition on the embedded chain: h0's two honest increments, h1's honest one, h1's `forged` one
    (declaring a quarter of what its mechanism spends, and charged that), and h1's raw submission `under` charged
    one millionth less than the metadata it reuses declares."""

    co: Coalition
    honest: list[int]
    forged: int
    under: int


def charged_run() -> ChargedRun:
    co = chain_stub_coalition(4, policy=POLICY)
    stub_backend(co).privacy = DECLARED
    h0, h1 = co.hospitals[0], co.hospitals[1]
    rows = [run_round(co, h0), run_round(co, h0), run_round(co, h1)]
    honest = [row.id for row in rows if row.id is not None and row.state == "committed"]
    stub_backend(co).privacy = dataclasses.replace(DECLARED, epsilon=EPSILON / 4)
    forged = run_round(co, h1)
    assert forged.state == "rejected" and forged.id is not None
    metadata = rebuild(co.client.events()).candidates[honest[0]].metadata_hash
    under = co.client.submit(
        h1.account, co.client.head(), os.urandom(32), "vault://x", metadata, epsilon_units(EPSILON) - 1
    )
    return ChargedRun(co, honest, forged.id, under.model_id)


def test_on_the_embedded_chain_the_auditor_rebuilds_every_budget_from_logs_and_vault() -> None:
    run = charged_run()
    co, ids, h0, h1 = run.co, run.honest, run.co.hospitals[0], run.co.hospitals[1]
    assert len(ids) == 3

    history = rebuild(co.client.events())
    members, findings = spending(history, declared_privacy(co.store, history))

    by_address = {s.budget.address: s for s in members}
    for hospital in co.hospitals:
        assert by_address[hospital.address].budget.spent_units == co.client.privacy_spent(hospital.address)
    alpha, beta = by_address[h0.address], by_address[h1.address]
    assert alpha.budget.cap_units == co.client.parameters().epsilon_cap
    assert [i.model_id for i in alpha.increments] == ids[:2]
    assert alpha.composition.epsilon is not None and is_tighter(alpha)
    assert alpha.composition.epsilon == pytest.approx(
        composed([Mechanism(DECLARED.noise_multiplier, DECLARED.sample_rate, DECLARED.steps)] * 2, DECLARED.delta)
    )
    assert [(i.model_id, i.state) for i in beta.increments] == [
        (ids[2], "committed"),
        (run.forged, "rejected"),
        (run.under, "submitted"),
    ]
    assert [(f.severity, f.model_id) for f in findings] == [
        (Severity.ERROR, run.forged),  # declares a quarter of what its mechanism spends
        (Severity.ERROR, run.under),  # charged below its declaration
    ]
    assert f"but its mechanism spends {EPSILON:.6g}" in findings[0].what
    charged, declared = epsilon_of(epsilon_units(EPSILON) - 1), epsilon_of(epsilon_units(EPSILON))
    assert findings[1].what == (
        f"was charged epsilon {charged:.6f} on chain, not the {declared:.6f} its metadata declares "
        f"(epsilon {EPSILON:.6g})"
    )
    verdict = audit(history, co.store)  # `tclearn audit verify` and the auditor's verdict carry them too
    assert not verdict.ok
    assert [(f.model_id, f.what) for f in verdict.errors if f in findings] == [(f.model_id, f.what) for f in findings]
