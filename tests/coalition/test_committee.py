"""The committee on a real coalition (embedded chain, real vault, variant B): the last committed models of different
hospitals, newest first, verified from the vault; too few is a clear conflict."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tclearn.coalition.committee import committee
from tclearn.coalition.context import Coalition
from tclearn.errors import ConfigError, ConflictError, IntegrityError
from tclearn.types import Variant
from tests.site.lineage import founded, grow


@pytest.fixture(scope="module")
def co(tmp_path_factory: pytest.TempPathFactory) -> Coalition:
    """Model 1 committed by hospital 0, the only hospital so far."""
    return founded(tmp_path_factory.mktemp("committee"))


def test_one_hospital_is_no_committee(co: Coalition) -> None:
    with pytest.raises(ConflictError, match=r"holds 1 that verify \(head 1, the genesis not counted\)"):
        committee(co, co.hospitals[2], 3)


@pytest.fixture(scope="module")
def grown(co: Coalition) -> Coalition:
    """Models 2 (hospital 1) and 3 (hospital 1 again) committed on top of model 1."""
    grow(co)
    assert co.client.head() == 3
    return co


def test_the_committee_is_the_newest_model_of_each_hospital(grown: Coalition) -> None:
    seated = committee(grown, grown.hospitals[2], 3)
    assert [m.model_id for m in seated] == [3, 1]  # model 2 is hospital 1's too: its newer model 3 sits
    assert [m.proposer.lower() for m in seated] == [grown.hospitals[i].address.lower() for i in (1, 0)]
    for m in seated:
        record = grown.client.get_model(m.model_id, with_uri=False)
        assert m.model_hash == record.model_hash.hex()
        opened = grown.backend.open(grown.hospitals[2], m.model_hash)
        assert all(torch.equal(opened[name], value) for name, value in m.network.state_dict().items())


def test_k_caps_the_committee(grown: Coalition) -> None:
    assert len(committee(grown, grown.hospitals[0], 2)) == 2


def test_a_committee_of_one_is_refused(grown: Coalition) -> None:
    with pytest.raises(ConfigError, match="at least 2"):
        committee(grown, grown.hospitals[0], 1)


def test_a_model_that_fails_verification_is_skipped_and_named(
    grown: Coalition, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    backend = grown.backend
    bad = grown.client.get_model(1, with_uri=False).model_hash.hex()
    real_open = type(backend).open

    def tampered(self: object, reader: object, model_hash: str) -> object:
        if model_hash == bad:
            raise IntegrityError("blob hash mismatch")
        return real_open(backend, reader, model_hash)  # type: ignore[arg-type]

    monkeypatch.setattr(type(backend), "open", tampered)
    with pytest.raises(ConflictError, match=r"holds 1 that verify .*models \[1\] failed verification"):
        committee(grown, grown.hospitals[2], 3)
    assert "model 1" in caplog.text and "fails verification" in caplog.text


def test_variant_c_has_no_committee(grown: Coalition) -> None:
    class Encrypted:
        variant = Variant.C

    with pytest.raises(ConflictError, match="variant C"):
        committee(dataclasses.replace(grown, backend=Encrypted()), grown.hospitals[0], 2)  # type: ignore[arg-type]
