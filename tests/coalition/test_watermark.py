"""The coalition's watermark on a real chain, vault and models: founding commits to the key (sealed for the founders
in variant B), members train the mark into every increment, and the general refuses a candidate that lost it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account import Account

from tclearn.coalition import general as general_duty
from tclearn.coalition.blobs import put_record
from tclearn.coalition.build import follow_policy, watermark_key
from tclearn.coalition.context import Coalition
from tclearn.coalition.declared import declared_policy
from tclearn.coalition.general import watermark_check
from tclearn.coalition.policy import WatermarkPolicy
from tclearn.coalition.rounds import run_round
from tclearn.coalition.watermark import read_key, store_key
from tclearn.errors import AccessDenied, ConfigError, IntegrityError, TclearnError
from tclearn.learning.synth import synth_coalition
from tclearn.learning.update import update_norm
from tclearn.learning.watermark import MarkKey, measure, new_key
from tclearn.ledger.chain import embedded_chain
from tclearn.records import CandidateMetadata, IntegrityReport, TrainingFacts
from tclearn.simulation.demo import DemoSettings, setup
from tclearn.types import Variant
from tclearn.vault.envelope import grant, public_bytes

MEMBERS = 3


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("watermark") / "data"
    synth_coalition(root, hospitals=MEMBERS, train=8, test=4, global_size=8, size=32, seed=0)
    return root


def make(data: Path, tmp_path: Path, variant: Variant, watermark: bool = True) -> Coalition:
    torch.set_num_threads(1)
    settings = DemoSettings(
        members=MEMBERS, byzantine=0, variant=variant, data=data, epochs=1, watermark=watermark, baselines=False
    )
    co, _ = setup(settings, embedded_chain(MEMBERS + 2), tmp_path)
    return co


def head_weights(co: Coalition, model_id: int | None = None) -> dict[str, torch.Tensor]:
    ref = co.client.get_model(co.client.head() if model_id is None else model_id, with_uri=False)
    return co.backend.open(co.hospitals[0], ref.model_hash.hex())  # type: ignore[no-any-return]


def report_of(co: Coalition, model_id: int) -> IntegrityReport:
    opened = next(e for e in co.client.events() if e.name == "CandidateOpened" and e.args["id"] == model_id)
    return IntegrityReport.parse(co.store.get(opened.args["reportHash"].hex()))


@pytest.mark.parametrize("variant", [Variant.A, Variant.B])
def test_founding_commits_to_the_key_and_every_member_reads_it(data: Path, tmp_path: Path, variant: Variant) -> None:
    co = make(data, tmp_path, variant)
    policy, _ = declared_policy(co.client, co.store)  # the record whose hash is on chain
    assert policy.watermark is not None and co.watermark is not None
    assert policy.watermark.key == co.watermark.sha256() and co.watermark.purpose == "coalition"
    assert (policy.watermark.max_ber, policy.watermark.strength) == (0.1, 1.0)
    for h in co.hospitals:
        assert read_key(co.store, policy.watermark, h.address, h.key if variant is Variant.B else None) == co.watermark
    if variant is Variant.B:  # sealed: the blob is ciphertext, and only a founder unwraps it
        with pytest.raises(IntegrityError, match="does not parse"):
            read_key(co.store, policy.watermark)
        with pytest.raises(TclearnError, match="cannot open the coalition's watermark key"):
            read_key(co.store, policy.watermark, co.hospitals[0].address, X25519PrivateKey.generate())
    assert co.backend.training.marks == (co.watermark,)  # type: ignore[attr-defined]


def test_a_coalition_without_a_watermark_says_so(data: Path, tmp_path: Path) -> None:
    co = make(data, tmp_path, Variant.A, watermark=False)
    notes: dict[str, str] = {}
    assert co.watermark is None and co.policy.watermark is None
    assert watermark_check(co, head_weights(co), notes) is None
    assert notes == {"watermark": "the coalition has no watermark"}


def test_an_honest_round_carries_the_mark_and_a_candidate_that_lost_it_is_refused(data: Path, tmp_path: Path) -> None:
    co = make(data, tmp_path, Variant.A)
    assert co.watermark is not None
    assert measure(head_weights(co, 0), co.watermark).errors == 0  # founding stamped the genesis with the mark
    row = run_round(co, co.hospitals[0])
    assert row.state == "committed"
    check = next(c for c in report_of(co, row.id).checks if c.name == "watermark")
    assert check.ok and check.detail.startswith("BER 0.000 (0 of 128 bits wrong), p ")

    # a member re-draws the carrier of the committed head: same architecture, the mark gone
    parent = head_weights(co)
    stripped = dict(parent)
    for name in co.watermark.carrier:
        stripped[name] = torch.randn_like(parent[name]) * parent[name].std()
    model_id = submit(co, parent, stripped)
    candidate = co.client.get_model(model_id)
    ok, report_hash, _ = general_duty.open_candidate(co, co.hospital(candidate.general), candidate)
    report = IntegrityReport.parse(co.store.get(report_hash))
    failed = report.checks[-1]
    assert not ok and failed.name == "watermark"
    reading = measure(stripped, co.watermark)
    assert failed.detail == (
        f"the candidate lost the coalition's watermark: {reading.errors} of 128 bits read wrong "
        f"(BER {reading.ber:.3f} > max_ber 0.1)"
    )
    assert reading.errors > 20


def submit(co: Coalition, parent: dict[str, torch.Tensor], weights: dict[str, torch.Tensor]) -> int:
    """Hospital 0 submits `weights` as an increment of the head, its metadata honest about the update."""
    head = co.client.head()
    parent_hash = co.client.get_model(head, with_uri=False).model_hash.hex()
    metadata = CandidateMetadata(
        variant=co.backend.variant.name,
        mode="incremental",
        parent=parent_hash,
        model=co.backend.describe(),
        training=TrainingFacts(8, 1, 8, "adam", 0.01, 0, "dice_ce", 1, 0.1, "cpu"),
        tclearn_version="test",
        update_norm=update_norm(parent, weights),
    )
    model_hash = co.backend.store_model(weights)
    meta_hash = put_record(co, metadata)
    proposer = co.hospitals[0]
    return co.client.submit(proposer.account, head, bytes.fromhex(model_hash), "u", bytes.fromhex(meta_hash)).model_id


def test_a_key_blob_that_is_not_the_committed_key_stops_the_build(data: Path, tmp_path: Path) -> None:
    co = make(data, tmp_path, Variant.A)
    assert co.watermark is not None and co.policy.watermark is not None
    other = new_key(head_weights(co), "coalition")
    forged = dataclasses.replace(co.policy.watermark, blob=store_key(co.store, other))
    policy = dataclasses.replace(co.policy, watermark=forged)
    with pytest.raises(IntegrityError, match="not the one the coalition committed to") as raised:
        watermark_key(co.store, policy, Variant.A, co.hospitals)
    assert co.policy.watermark.key in str(raised.value) and other.sha256() in str(raised.value)
    assert str(raised.value).startswith(f"{co.hospitals[0].name} cannot open the coalition's watermark key")


def test_a_member_the_key_was_not_sealed_for_cannot_build(data: Path, tmp_path: Path) -> None:
    co = make(data, tmp_path, Variant.B)
    stranger = dataclasses.replace(co.hospitals[1], name="stranger", account=Account.create())
    with pytest.raises(AccessDenied, match=r"stranger cannot open the coalition.s watermark key: .* not a recipient"):
        watermark_key(co.store, co.policy, Variant.B, [stranger])
    assert co.policy.watermark is not None
    founder = co.hospitals[0]  # a founder wraps the key for the member admitted later
    grant(
        co.store, co.policy.watermark.blob, founder.address, founder.key, {stranger.address: public_bytes(stranger.key)}
    )
    assert watermark_key(co.store, co.policy, Variant.B, [stranger]) == co.watermark


def test_the_policy_blob_must_hold_a_coalition_key(tmp_path: Path) -> None:
    from tclearn.vault.store import FsspecStore

    store = FsspecStore(f"file://{tmp_path}")
    weights = {"w": torch.randn(64, 64)}
    fingerprint = new_key(weights, "fingerprint", bits=64)
    policy = WatermarkPolicy(fingerprint.sha256(), store_key(store, fingerprint))
    with pytest.raises(IntegrityError, match="a fingerprint key, not the coalition's watermark"):
        read_key(store, policy)
    assert MarkKey.parse(store.get(policy.blob)) == fingerprint
    with pytest.raises(AccessDenied, match="no recipient"):
        store_key(store, fingerprint, {})


def test_variant_c_cannot_carry_a_watermark(data: Path, tmp_path: Path) -> None:
    from tclearn.coalition.founding import with_watermark
    from tclearn.coalition.policy import AcceptancePolicy
    from tclearn.simulation.up import UpSettings
    from tclearn.vault.store import FsspecStore

    with pytest.raises(ConfigError, match="--watermark is for variants A and B"):
        DemoSettings(members=MEMBERS, byzantine=0, variant=Variant.C, watermark=True)
    with pytest.raises(ConfigError, match="--watermark is for variants A and B"):
        UpSettings(members=MEMBERS, byzantine=0, variant=Variant.C, watermark=True, out=tmp_path)
    key = new_key({"w": torch.randn(64, 64)}, "coalition")
    store = FsspecStore(f"file://{tmp_path}")
    with pytest.raises(ConfigError, match="variant C coalition cannot carry a watermark"):
        with_watermark(AcceptancePolicy(), store, key, None, Variant.C)
    assert not store.exists(key.sha256())  # nothing stored
    founded = with_watermark(AcceptancePolicy(max_drift=0.04), store, key, None, Variant.A)
    assert founded.watermark == WatermarkPolicy(key.sha256(), key.sha256())  # in clear: the blob is the record
    assert founded.max_drift == 0.04


def test_a_node_follows_a_new_policys_watermark(data: Path, tmp_path: Path) -> None:
    co = make(data, tmp_path, Variant.A)
    assert co.watermark is not None and co.policy.watermark is not None
    backend = co.backend
    follow_policy(co, dataclasses.replace(co.policy, max_drift=0.04))  # the watermark unchanged: the same key
    assert co.policy.max_drift == 0.04 and backend.training.marks == (co.watermark,)  # type: ignore[attr-defined]

    follow_policy(co, dataclasses.replace(co.policy, watermark=None))
    assert co.watermark is None and backend.training.marks == ()  # type: ignore[attr-defined]

    other = new_key(head_weights(co), "coalition")
    section = WatermarkPolicy(other.sha256(), store_key(co.store, other), strength=2.0)
    follow_policy(co, dataclasses.replace(co.policy, watermark=section))
    assert co.watermark == other and backend.training.marks == (other,)  # type: ignore[attr-defined]
    assert backend.training.mark_strength == 2.0  # type: ignore[attr-defined]

    forged = dataclasses.replace(section, key="00" * 32)
    with pytest.raises(IntegrityError, match="not the one the coalition committed to"):
        follow_policy(co, dataclasses.replace(co.policy, watermark=forged))
    assert co.watermark == other and co.policy.watermark == section  # nothing applied


def test_founding_keeps_the_policys_watermark_bounds(tmp_path: Path) -> None:
    from tclearn.coalition.founding import with_watermark
    from tclearn.coalition.policy import AcceptancePolicy
    from tclearn.vault.store import FsspecStore

    store = FsspecStore(f"file://{tmp_path}")
    key = new_key({"w": torch.randn(64, 64)}, "coalition")
    given = AcceptancePolicy(watermark=WatermarkPolicy("ab" * 32, "cd" * 32, max_ber=0.05, strength=3.0))
    founded = with_watermark(given, store, key, None, Variant.A)
    assert founded.watermark == WatermarkPolicy(key.sha256(), key.sha256(), max_ber=0.05, strength=3.0)
    with pytest.raises(ConfigError, match="needs a coalition key, not a fingerprint key"):
        with_watermark(given, store, new_key({"w": torch.randn(64, 64)}, "fingerprint"), None, Variant.A)
