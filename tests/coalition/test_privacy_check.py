"""The general's differential privacy check (`integrity.privacy_problem`): pure, by table."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tclearn.coalition.integrity import privacy_problem
from tclearn.coalition.policy import AcceptancePolicy, PrivacyPolicy
from tclearn.learning.privacy import Accountant, Mechanism, epsilon_spent
from tclearn.ledger.values import epsilon_units
from tclearn.records import CandidateMetadata, Privacy, TrainingFacts

from .fakes import DESCRIPTION

FACTS = TrainingFacts(24, 3, 8, "adam", 0.01, 0, "dice", 9, 0.0, "cpu")
EPSILON = epsilon_spent(Mechanism(1.5, 8 / 24, 9), 1e-5, Accountant.RDP)
DP = Privacy("dp-sgd", "rdp", "sample", 1.5, 1.0, 8 / 24, 9, 1e-5, EPSILON, 24)
PLAIN = CandidateMetadata("A", "incremental", "aa" * 32, DESCRIPTION, FACTS, "test")
PRIVATE = dataclasses.replace(PLAIN, privacy=DP)
REQUIRED = AcceptancePolicy(privacy=PrivacyPolicy(epsilon_cap=8.0, min_noise_multiplier=1.0))
OPTIONAL = AcceptancePolicy(privacy=PrivacyPolicy(required=False))
NONE = AcceptancePolicy()
CHARGE = epsilon_units(EPSILON)


def test_the_declared_epsilon_is_what_the_mechanism_spends() -> None:
    assert 0 < EPSILON < 100
    assert privacy_problem(PRIVATE, REQUIRED, CHARGE) is None


@pytest.mark.parametrize(
    ("metadata", "policy", "charged", "problem"),
    [
        (PLAIN, NONE, 0, None),
        (PLAIN, OPTIONAL, 0, None),
        (PRIVATE, NONE, CHARGE, None),  # DP where none is required is still checked and charged
        (PRIVATE, OPTIONAL, CHARGE, None),
        (PLAIN, REQUIRED, 0, "the coalition requires differential privacy (DP-SGD); the candidate declares none"),
        (PLAIN, NONE, 5, "its submission charged epsilon 5e-06, but it declares no differential privacy"),
        (PRIVATE, REQUIRED, 0, f"it declares epsilon {EPSILON:g}, but its submission charged 0 on chain"),
        (PRIVATE, REQUIRED, CHARGE - 1, "but its submission charged"),
    ],
)
def test_privacy_against_policy_and_charge(
    metadata: CandidateMetadata, policy: AcceptancePolicy, charged: int, problem: str | None
) -> None:
    found = privacy_problem(metadata, policy, charged)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found, found


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"delta": 1e-6}, "it states epsilon at delta 1e-06; the coalition counts at delta 1e-05"),
        ({"accountant": "prv"}, "it is accounted with prv; the coalition counts with rdp"),
        ({"noise_multiplier": 0.8}, "its noise multiplier 0.8 is below the coalition's minimum 1"),
        ({"unit": "household"}, "its privacy unit 'household' is neither sample nor patient"),
        ({"steps": 8}, "it declares 8 private steps, but 9 training steps"),
        ({"units": 30}, "it declares 30 privacy units for 24 samples"),
        ({"units": 12}, "its privacy unit is the sample, but it declares 12 units for 24 samples"),
        ({"unit": "patient", "units": 12}, "it declares sample rate 0.333333, but its batch of 8 over 12 units"),
        ({"sample_rate": 0.5}, "it declares sample rate 0.5, but its batch of 8 over 24 units is 0.333333"),
        ({"max_grad_norm": 0.0}, "its clipping norm 0 is not positive"),
        ({"epsilon": EPSILON / 2}, f"it declares epsilon {EPSILON / 2:.6g}, but its mechanism (noise 1.5"),
        ({"epsilon": EPSILON * 1.001}, "but its mechanism"),
    ],
)
def test_a_declaration_that_does_not_hold_is_named(changes: dict[str, Any], problem: str) -> None:
    metadata = dataclasses.replace(PRIVATE, privacy=dataclasses.replace(DP, **changes))
    charged = epsilon_units(metadata.privacy.epsilon) if metadata.privacy else 0
    found = privacy_problem(metadata, REQUIRED, charged)
    assert found is not None and problem in found, found


def test_delta_not_below_one_over_n_is_refused() -> None:
    facts = dataclasses.replace(FACTS, samples=8, batch_size=8, steps=3)
    epsilon = epsilon_spent(Mechanism(1.5, 1.0, 3), 0.2, Accountant.RDP)
    dp = dataclasses.replace(DP, units=8, sample_rate=1.0, steps=3, delta=0.2, epsilon=epsilon)
    metadata = dataclasses.replace(PLAIN, training=facts, privacy=dp)
    found = privacy_problem(metadata, NONE, epsilon_units(epsilon))
    assert found is not None and "delta 0.2 is not below 1/N = 0.125" in found, found


def test_a_patient_unit_with_fewer_units_than_samples_passes() -> None:
    epsilon = epsilon_spent(Mechanism(1.5, 8 / 12, 9), 1e-5, Accountant.RDP)
    dp = dataclasses.replace(DP, unit="patient", units=12, sample_rate=8 / 12, epsilon=epsilon)
    assert privacy_problem(dataclasses.replace(PLAIN, privacy=dp), REQUIRED, epsilon_units(epsilon)) is None
