"""`tclearn demo --dp-epsilon`: a DP coalition of MONAI networks on the embedded chain, end to end — every increment
DP-SGD, its epsilon recomputed by the general and charged on chain within each hospital's cap."""

from __future__ import annotations

from pathlib import Path

import pytest

from tclearn.coalition.blobs import get_record
from tclearn.errors import ConfigError
from tclearn.learning.privacy import Accountant, Mechanism, epsilon_spent
from tclearn.ledger.chain import embedded_chain
from tclearn.ledger.history import spent_by_member
from tclearn.ledger.values import epsilon_units
from tclearn.records import CandidateMetadata, IntegrityReport
from tclearn.simulation.demo import DemoSettings, run_demo

CAP = 6.0


def test_a_dp_demo_charges_each_increment_within_each_hospitals_cap(tmp_path: Path) -> None:
    settings = DemoSettings(
        members=2,
        byzantine=0,
        attack="none",  # type: ignore[arg-type]
        variant="A",  # type: ignore[arg-type]
        rounds=4,
        cases=16,
        batch_size=4,
        epochs=1,
        dp_epsilon=CAP,
        baselines=False,
    )
    assert settings.epsilon_per_increment == CAP / 2  # each hospital proposes twice
    result = run_demo(settings, embedded_chain(settings.accounts), tmp_path)
    co, history = result.coalition, result.history
    assert co.policy.privacy is not None and co.policy.privacy.required
    assert co.client.parameters().epsilon_cap == epsilon_units(CAP)
    increments = {i: c for i, c in history.candidates.items() if i > 0}  # model 0 is the genesis
    assert len(increments) == 4
    for model_id, candidate in increments.items():
        metadata = get_record(co, candidate.metadata_hash.hex(), CandidateMetadata)
        privacy = metadata.privacy
        assert privacy is not None and privacy.unit == "sample" and privacy.units == 16
        recomputed = epsilon_spent(
            Mechanism(privacy.noise_multiplier, privacy.sample_rate, privacy.steps), 1e-5, Accountant.RDP
        )
        assert privacy.epsilon == pytest.approx(recomputed) and privacy.epsilon <= CAP / 2
        assert co.client.privacy_charge(model_id) == epsilon_units(privacy.epsilon)
        assert candidate.report_hash is not None
        report = get_record(co, candidate.report_hash.hex(), IntegrityReport)
        assert next(c for c in report.checks if c.name == "privacy").ok
    spent = spent_by_member(history)
    assert set(spent) == {h.address for h in co.hospitals}
    for h in co.hospitals:
        assert spent[h.address] == co.client.privacy_spent(h.address) <= epsilon_units(CAP)
    assert result.audit.ok


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dp_epsilon": 0.0}, "--dp-epsilon must be a positive number, got 0.0"),
        ({"dp_epsilon": -1.0}, "--dp-epsilon must be a positive number"),
        ({"dp_epsilon": 8.0, "variant": "C"}, "--dp-epsilon trains DP-SGD increments: variant A or B"),
        ({"dp_epsilon": 8.0, "mode": "fedavg"}, "--dp-epsilon trains DP-SGD increments: variant A or B"),
        ({"cases": 4}, "--cases 4 cannot fill one batch of 8"),
    ],
)
def test_bad_dp_demo_settings_are_named(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DemoSettings(byzantine=0, attack="none", **options)  # type: ignore[arg-type]
