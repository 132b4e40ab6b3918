"""A DP coalition's rounds, on the in-memory ledger and on the embedded chain: each DP increment's epsilon is charged
to its proposer on chain and recomputed by the general; a member refuses before training what its budget or the
privacy policy would refuse; a declaration that does not hold is rejected by the general, naming why."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from tclearn.coalition.blobs import get_record
from tclearn.coalition.context import Coalition
from tclearn.coalition.fedavg import contribute
from tclearn.coalition.member import propose
from tclearn.coalition.policy import AcceptancePolicy, PrivacyPolicy
from tclearn.coalition.rounds import run_round
from tclearn.errors import ConfigError, PrivacyBudgetExceeded
from tclearn.learning.privacy import Accountant, Mechanism, epsilon_spent
from tclearn.ledger.history import rebuild, spent_by_member
from tclearn.ledger.values import epsilon_units
from tclearn.records import IntegrityReport, Privacy

from .fakes import BATCH_SIZE, STEPS, chain_stub_coalition, stub_backend, stub_coalition

UNITS = 8  # the stub hospitals' training images
NOISE = 2.0
EPSILON = epsilon_spent(Mechanism(NOISE, BATCH_SIZE / UNITS, STEPS), 1e-5, Accountant.RDP)
DECLARED = Privacy("dp-sgd", "rdp", "sample", NOISE, 1.0, BATCH_SIZE / UNITS, STEPS, 1e-5, EPSILON, UNITS)
# Two increments fit each hospital's cap, a third does not.
POLICY = AcceptancePolicy(min_batch_size=4, privacy=PrivacyPolicy(epsilon_cap=2.5 * EPSILON, min_noise_multiplier=1.0))

Build = Callable[..., Coalition]
BACKENDS = pytest.mark.parametrize("build", [stub_coalition, chain_stub_coalition], ids=["memory", "chain"])


def private(build: Build, privacy: Privacy | None = DECLARED, policy: AcceptancePolicy = POLICY) -> Coalition:
    co = build(4, policy=policy)
    stub_backend(co).privacy = privacy
    return co


def report_of(co: Coalition, model_id: int) -> IntegrityReport:
    digest = rebuild(co.client.events()).candidates[model_id].report_hash
    assert digest is not None
    return get_record(co, digest.hex(), IntegrityReport)


@BACKENDS
def test_each_dp_increment_is_charged_and_a_spent_budget_refuses_before_training(build: Build) -> None:
    co = private(build)
    h = co.hospitals[0]
    assert co.client.parameters().epsilon_cap == epsilon_units(2.5 * EPSILON)
    for n in (1, 2):
        row = run_round(co, h)
        assert row.state == "committed", row
        assert co.client.privacy_charge(row.id) == epsilon_units(EPSILON)
        assert co.client.privacy_spent(h.address) == n * epsilon_units(EPSILON)
        privacy = next(c for c in report_of(co, row.id).checks if c.name == "privacy")
        assert privacy.ok and "recomputed from its mechanism and charged on chain" in privacy.detail
    submitted = co.client.model_count()
    with pytest.raises(PrivacyBudgetExceeded, match=r"h0's privacy budget is spent: .* Nothing was trained"):
        propose(co, h)
    assert co.client.model_count() == submitted  # nothing was submitted
    assert co.client.privacy_spent(h.address) == 2 * epsilon_units(EPSILON)
    assert co.client.privacy_spent(co.hospitals[1].address) == 0  # each hospital has its own budget
    assert run_round(co, co.hospitals[1]).state == "committed"
    assert spent_by_member(rebuild(co.client.events())) == {
        h.address: 2 * epsilon_units(EPSILON),
        co.hospitals[1].address: epsilon_units(EPSILON),
    }


@BACKENDS
def test_a_declared_epsilon_below_what_its_mechanism_spends_is_rejected_by_the_general(build: Build) -> None:
    co = private(build, dataclasses.replace(DECLARED, epsilon=EPSILON / 4))  # charged a quarter of what it spent
    row = run_round(co, co.hospitals[0])
    assert row.state == "rejected"
    failed = next(c for c in report_of(co, row.id).checks if not c.ok)
    assert failed.name == "privacy"
    assert f"spends {EPSILON:.6g} at delta 1e-05 (rdp)" in failed.detail
    assert co.client.privacy_spent(co.hospitals[0].address) == epsilon_units(EPSILON / 4)  # charged: it was shared


def test_a_coalition_that_requires_dp_refuses_a_member_training_without_it_before_any_step() -> None:
    co = private(stub_coalition, None)
    with pytest.raises(ConfigError, match=r"h0: the coalition requires differential privacy"):
        propose(co, co.hospitals[0])
    assert co.client.model_count() == 1  # the genesis alone


def test_an_increment_the_privacy_policy_refuses_is_not_trained() -> None:
    co = private(stub_coalition, dataclasses.replace(DECLARED, noise_multiplier=0.5))
    with pytest.raises(ConfigError, match=r"would be refused by the general: its noise multiplier 0.5 is below"):
        propose(co, co.hospitals[0])
    assert co.client.model_count() == 1


def test_without_privacy_rules_a_dp_increment_is_still_checked_and_charged_without_a_cap() -> None:
    co = private(stub_coalition, policy=AcceptancePolicy(min_batch_size=4))
    assert co.client.parameters().epsilon_cap == 0
    for _ in range(3):  # past what a cap of 2.5 increments would allow: no cap is kept
        assert run_round(co, co.hospitals[0]).state == "committed"
    assert co.client.privacy_spent(co.hospitals[0].address) == 3 * epsilon_units(EPSILON)


@pytest.mark.parametrize("declared", [None, DECLARED], ids=["dp-coalition", "dp-member"])
def test_fedavg_mode_refuses_dp_before_training(declared: Privacy | None) -> None:
    co = private(stub_coalition, declared, POLICY if declared is None else AcceptancePolicy(min_batch_size=4))
    with pytest.raises(ConfigError, match=r"h0: FedAvg mode does not account differential privacy"):
        contribute(co, co.hospitals[0], 0)
