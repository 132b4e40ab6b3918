"""Exports and traces on a real coalition (embedded chain, real vault, variant B): a committed model exported by a
hospital carries a fingerprint recorded on chain, and a trace names that hospital — after int8 and pruning too —
and nobody for a model that was never exported; refused exports record and write nothing."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch

from tclearn.coalition import exports as exports_module
from tclearn.coalition.context import Coalition
from tclearn.coalition.exports import Export, export_model, json_path, master_secret, tracers, write_export
from tclearn.coalition.member import increment, submit
from tclearn.coalition.rounds import run_round
from tclearn.coalition.trace import fingerprint_key, trace
from tclearn.errors import AccessDenied, AuthError, ConflictError, DataError, IntegrityError, NotFoundError
from tclearn.learning.fingerprint import Embedded
from tclearn.learning.modelfile import read_weights
from tclearn.learning.models import ModelConfig, build_model
from tclearn.learning.synth import synth_coalition
from tclearn.learning.tampering import int8_round_trip, magnitude_prune
from tclearn.learning.watermark import (
    FALSE_ACCUSATION,
    FINGERPRINT_BITS,
    MarkKey,
    chance_tail,
    measure,
    new_key,
    stamp,
    threshold,
)
from tclearn.ledger.chain import embedded_chain
from tclearn.simulation.demo import DemoSettings, setup
from tclearn.types import Member, Role, Variant
from tclearn.vault.envelope import public_bytes, seal

MEMBERS = 3


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("exports") / "data"
    synth_coalition(root, hospitals=MEMBERS, train=16, test=8, global_size=16, size=48, seed=0)
    return root


def committed(data: Path, out: Path) -> Coalition:
    """A variant B coalition of three hospitals whose model 1 is committed."""
    torch.set_num_threads(1)
    settings = DemoSettings(members=MEMBERS, byzantine=0, variant=Variant.B, data=data, epochs=1, baselines=False)
    co, _ = setup(settings, embedded_chain(MEMBERS + 3), out)
    assert run_round(co, co.hospitals[0]).state == "committed"
    return co


@pytest.fixture(scope="module")
def co(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Coalition:
    return committed(data, tmp_path_factory.mktemp("coalition"))


@pytest.fixture(scope="module")
def exported(co: Coalition) -> tuple[Export, Export]:
    """Hospitals h1 and h2 each export the committed head."""
    head = co.client.head()
    return export_model(co, co.hospitals[1], head), export_model(co, co.hospitals[2], head)


def weights_of(co: Coalition, model_id: int) -> dict[str, torch.Tensor]:
    model_hash = co.client.get_model(model_id, with_uri=False).model_hash.hex()
    return co.backend.open(co.hospitals[0], model_hash)  # type: ignore[no-any-return]


def trace_as(co: Coalition, index: int, suspect: dict[str, torch.Tensor]) -> list[str]:
    """The members a trace by hospital `index` accuses."""
    h = co.hospitals[index]
    return [r.export.member for r in trace(co.client, co.store, h.address, h.key, suspect).accused]


def test_an_export_is_recorded_on_chain_and_its_copy_carries_its_fingerprint(
    co: Coalition, exported: tuple[Export, Export]
) -> None:
    first, second = exported
    on_chain = co.client.exports()
    assert [(e.id, e.model_id, e.member) for e in on_chain] == [
        (first.id, first.model_id, co.hospitals[1].address),
        (second.id, second.model_id, co.hospitals[2].address),
    ]
    assert [e.fingerprint.hex() for e in on_chain] == [first.fingerprint, second.fingerprint]
    assert [e.key_blob.hex() for e in on_chain] == [first.key_blob, second.key_blob]
    reader = co.hospitals[0]  # no auditor: the keys are sealed for the active members
    key = fingerprint_key(co.store, on_chain[0], reader.address, reader.key)
    assert key.bits == FINGERPRINT_BITS and key.purpose == "fingerprint" and key.sha256() == first.fingerprint
    assert measure(first.weights, key).errors == 0
    assert measure(weights_of(co, first.model_id), key).errors > FINGERPRINT_BITS // 5  # the committed model: chance
    assert first.fingerprint != second.fingerprint  # a fresh nonce each time
    assert [(s.data, s.samples) for s in first.scores] == [
        ("L", len(co.hospitals[1].local_test)),
        ("G", len(co.global_test)),
    ]
    for s in first.scores:  # the fingerprint keeps the model's function
        assert abs(s.exported - s.committed) < 0.05


@pytest.mark.parametrize(
    "tamper",
    [
        lambda w: w,
        int8_round_trip,
        lambda w: magnitude_prune(w, 0.5),
        lambda w: int8_round_trip(magnitude_prune(w, 0.5)),
    ],
    ids=["as exported", "int8", "pruned 50%", "pruned and int8"],
)
def test_a_trace_names_the_exporter(co: Coalition, exported: tuple[Export, Export], tamper: object) -> None:
    assert callable(tamper)
    for export, exporter in zip(exported, co.hospitals[1:], strict=True):
        assert trace_as(co, 0, tamper(export.weights)) == [exporter.address]


def test_the_bound_a_trace_keeps_and_a_model_never_exported_accuses_nobody(
    co: Coalition, exported: tuple[Export, Export]
) -> None:
    h = co.hospitals[0]
    found = trace(co.client, co.store, h.address, h.key, weights_of(co, co.client.head()))
    assert found.accused == () and len(found.readings) == len(co.client.exports())
    two_sided = threshold(FINGERPRINT_BITS, 2 * len(found.readings))  # a match or an inverted reading, per export
    assert all(r.threshold == two_sided for r in found.readings)
    assert found.bound == pytest.approx(2 * len(found.readings) * chance_tail(FINGERPRINT_BITS, two_sided))
    assert 0 < found.bound <= FALSE_ACCUSATION
    assert not any(r.match or r.inverted for r in found.readings)
    assert trace_as(co, 0, weights_of(co, 0)) == []  # the genesis
    summary = found.summary()
    assert summary["accused"] == [] and summary["false_accusation_bound"] == found.bound
    assert json.loads(json.dumps(summary)) == summary  # JSON as it is


def test_a_fingerprint_its_holder_inverted_names_the_exporter(co: Coalition, exported: tuple[Export, Export]) -> None:
    first = exported[0]
    reader = co.hospitals[0]
    key = fingerprint_key(co.store, co.client.exports()[0], reader.address, reader.key)
    flipped = MarkKey.parse(key.encode())
    flipped.__dict__["signs"] = -key.signs  # a holder of the key pushes every bit to the wrong side
    removed = stamp(first.weights, flipped)
    assert measure(removed, key).errors == FINGERPRINT_BITS
    found = trace(co.client, co.store, reader.address, reader.key, removed)
    (accused,) = found.accused
    assert accused.export.member == co.hospitals[1].address and accused.inverted and not accused.match
    assert accused.p_value == pytest.approx(2 * 2.0**-FINGERPRINT_BITS)
    assert found.summary()["accused"][0]["inverted"] is True


def test_a_trace_reads_the_coalition_watermark_an_export_keeps(co: Coalition) -> None:
    genesis = weights_of(co, 0)
    marked = dataclasses.replace(co, watermark=new_key(genesis, "coalition", secret=b"\x07" * 32))
    assert marked.watermark is not None
    export = export_model(marked, co.hospitals[1], co.client.head())
    assert measure(export.weights, marked.watermark).errors == 0
    h = co.hospitals[0]
    found = trace(co.client, co.store, h.address, h.key, export.weights, marked.watermark)
    assert found.watermark is not None and found.watermark.errors == 0
    assert [r.export.id for r in found.accused] == [export.id]


def test_a_model_of_another_architecture_accuses_nobody(co: Coalition, exported: tuple[Export, Export]) -> None:
    other = build_model(  # the default unet, narrower than the demo's
        ModelConfig.from_dict({"arch": "unet"})
    ).state_dict()
    with pytest.raises(IntegrityError, match="not of the coalition's architecture"):
        trace_as(co, 0, other)


def test_a_tracer_the_keys_are_not_sealed_for_is_told_so(co: Coalition, exported: tuple[Export, Export]) -> None:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    outsider = "0x" + "ab" * 20
    with pytest.raises(AccessDenied, match=r"export 0's fingerprint key .* is not sealed for"):
        trace(co.client, co.store, outsider, X25519PrivateKey.generate(), exported[0].weights)
    member = co.hospitals[0].address  # a reader, with another key than the one it registered
    with pytest.raises(AuthError, match=r"export 0's fingerprint key .*wrong key.*the X25519 key .* registered"):
        trace(co.client, co.store, member, X25519PrivateKey.generate(), exported[0].weights)


def test_an_unknown_model_is_refused_before_any_work(
    co: Coalition, exported: tuple[Export, Export], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = co.client.exports()

    def no_work(*_args: object, **_kw: object) -> Embedded:
        raise AssertionError("the model was worked on before the chain's state was checked")

    monkeypatch.setattr(exports_module, "embed", no_work)
    with pytest.raises(NotFoundError, match="no model 99 on chain"):
        export_model(co, co.hospitals[1], 99)
    assert co.client.exports() == before


def test_an_uncommitted_model_is_refused_and_a_failed_mark_records_nothing(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh = committed(data, tmp_path)
    proposer = fresh.hospitals[1]
    head = fresh.client.head()
    nothing = trace(fresh.client, fresh.store, proposer.address, proposer.key, weights_of(fresh, head))
    assert nothing.readings == () and nothing.accused == () and nothing.bound == 0  # no export yet
    model_hash, metadata = increment(fresh, proposer, head, None, None)
    pending = submit(fresh, proposer, head, model_hash, metadata).submission.model_id
    with pytest.raises(ConflictError, match=f"model {pending} is submitted, not committed"):
        export_model(fresh, proposer, pending)

    def unmarked(model: torch.nn.Module, *_args: object, **_kw: object) -> Embedded:
        return Embedded({k: v.clone() for k, v in model.state_dict().items()}, 3, 0.0, False)

    monkeypatch.setattr(exports_module, "embed", unmarked)
    with pytest.raises(DataError, match="the fingerprint was not written in 3 steps"):
        export_model(fresh, proposer, head)
    assert fresh.client.exports() == []


def test_a_key_blob_that_is_not_the_committed_key_is_named(data: Path, tmp_path: Path) -> None:
    fresh = committed(data, tmp_path)
    cheat, reader = fresh.hospitals[1], fresh.hospitals[0]
    weights = weights_of(fresh, fresh.client.head())
    shown, hidden = (new_key(weights, "fingerprint", bits=FINGERPRINT_BITS) for _ in range(2))
    readers = {h.address: public_bytes(h.key) for h in fresh.hospitals}
    blob = seal(fresh.store, [hidden.encode()], readers)
    export_id, _ = fresh.client.record_export(
        cheat.account, fresh.client.head(), bytes.fromhex(shown.sha256()), bytes.fromhex(blob)
    )
    with pytest.raises(IntegrityError, match=f"blob {blob} is not the one export {export_id} committed to"):
        trace(fresh.client, fresh.store, reader.address, reader.key, weights)


def test_an_export_file_and_its_json_appear_whole(
    co: Coalition, exported: tuple[Export, Export], tmp_path: Path
) -> None:
    export = exported[0]
    path = write_export(tmp_path / "out" / "model.safetensors", export, {"chain_id": 1})
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.safetensors", "model.safetensors.json"]
    record = json.loads(json_path(path).read_text())
    assert record == {**export.summary(), "chain_id": 1} and record["export_id"] == export.id
    read = read_weights(path)
    assert read.keys() == export.weights.keys() and all(torch.equal(read[k], export.weights[k]) for k in read)
    torch.save(export.weights, tmp_path / "model.pt")
    assert trace_as(co, 0, read_weights(tmp_path / "model.pt")) == [co.hospitals[1].address]


def _member(address: str, roles: Role, active: bool = True, key: bytes = b"\x01" * 32) -> Member:
    return Member(address, roles, active, key, address, 0, 0, 0)


MV, A = Role.MEMBER | Role.VALIDATOR, Role.AUDITOR


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        ([_member("m1", MV), _member("m2", Role.MEMBER)], ["m1", "m2"]),
        ([_member("m1", MV), _member("a1", A)], ["a1"]),
        ([_member("m1", MV), _member("a1", A, active=False)], ["m1"]),
        ([_member("m1", MV), _member("a1", A, key=b"\x00" * 32)], ["m1"]),
        ([_member("m1", MV, key=b"\x00" * 32), _member("s1", Role.SUPERVISOR)], []),
    ],
    ids=["members", "auditors first", "inactive auditor", "auditor without key", "nobody"],
)
def test_fingerprint_keys_are_sealed_for_the_auditors_else_the_members(
    members: list[Member], expected: list[str]
) -> None:
    assert sorted(tracers(members)) == expected


def test_a_hospitals_master_secret_is_its_own() -> None:
    one, two = os.urandom(32), os.urandom(32)
    assert master_secret(one) == master_secret(one) and len(master_secret(one)) == 32
    assert master_secret(one) != master_secret(two) and master_secret(one) != one
