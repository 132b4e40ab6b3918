"""The coalition duties on real models, real chain and real vault: every fault of the issue is handled as the
protocol says and never leads to a committed unverified model."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import torch
from eth_account.messages import encode_defunct

from tclearn.canonical import canonical_json
from tclearn.coalition import general as general_duty
from tclearn.coalition import validator as validator_duty
from tclearn.coalition.blobs import put_record
from tclearn.coalition.build import Images, hospital_folders
from tclearn.coalition.context import Coalition
from tclearn.coalition.fedavg import Aggregator, contribute, message, propose_aggregate, signed, verify_aggregate
from tclearn.coalition.keeper import keep
from tclearn.coalition.member import propose
from tclearn.coalition.policy import AcceptancePolicy
from tclearn.coalition.rounds import run_fedavg_round, run_round
from tclearn.errors import NotFoundError, TrainingCancelled
from tclearn.learning.aggregate import fedavg as fedavg_of
from tclearn.learning.attacks import Attack
from tclearn.learning.collusion import little_is_enough, z_of
from tclearn.learning.synth import synth_coalition
from tclearn.learning.train import CancelToken
from tclearn.learning.update import update_norm
from tclearn.ledger.chain import embedded_chain
from tclearn.records import Aggregation, CandidateMetadata, Contribution, Exclusion, TrainingFacts
from tclearn.simulation.collusion import little_is_enough_round
from tclearn.simulation.demo import DemoSettings, setup
from tclearn.types import ModelState, RejectReason, Variant

MEMBERS = 4


@pytest.fixture(scope="session")
def coalition_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("coalition") / "data"
    synth_coalition(root, hospitals=MEMBERS, train=16, test=8, global_size=16, size=48, seed=0)
    return root


def make(coalition_data: Path, tmp_path: Path, variant: Variant = Variant.B, **kw: object) -> Coalition:
    torch.set_num_threads(1)
    options: dict[str, object] = {"epochs": 1, **kw}
    settings = DemoSettings(members=MEMBERS, byzantine=0, variant=variant, data=coalition_data, **options)  # type: ignore[arg-type]
    co, _ = setup(settings, embedded_chain(MEMBERS + 2), tmp_path)
    return co


def honest_metadata(co: Coalition, **changes: object) -> CandidateMetadata:
    """Metadata an honest member would declare for an increment of the head (with `changes`)."""
    parent = co.client.get_model(co.client.head(), with_uri=False).model_hash.hex()
    facts = TrainingFacts(16, 1, 8, "adam", 0.01, 0, "dice_ce", 2, 0.1, "cpu")
    metadata = CandidateMetadata(
        variant=co.backend.variant.name,
        mode="incremental",
        parent=parent,
        model=co.backend.describe(),
        training=facts,
        tclearn_version="test",
    )
    return dataclasses.replace(metadata, **changes)  # type: ignore[arg-type]


def submit_weights(co: Coalition, weights: dict[str, torch.Tensor], *, metadata: bytes | None = None) -> int:
    """Hospital 0 submits `weights` with honest-looking metadata (or the given raw metadata blob)."""
    head = co.client.head()
    model_hash = co.backend.store_model(weights)
    meta_hash = co.store.put(metadata) if metadata is not None else put_record(co, honest_metadata(co))
    proposer = co.hospitals[0]
    return co.client.submit(proposer.account, head, bytes.fromhex(model_hash), "u", bytes.fromhex(meta_hash)).model_id


def general_verdict(co: Coalition, model_id: int) -> tuple[bool, dict[str, object]]:
    candidate = co.client.get_model(model_id)  # with its metadata hash (the Submitted event's)
    ok, report_hash, _ = general_duty.open_candidate(co, co.hospital(candidate.general), candidate)
    return ok, json.loads(co.store.get(report_hash))


def honest_weights(co: Coalition) -> dict[str, torch.Tensor]:
    head = co.client.get_model(co.client.head(), with_uri=False)
    return co.backend.open(co.hospitals[0], head.model_hash.hex())  # type: ignore[no-any-return]


@pytest.mark.parametrize("variant", [Variant.A, Variant.B])
def test_an_honest_round_commits(coalition_data: Path, tmp_path: Path, variant: Variant) -> None:
    co = make(coalition_data, tmp_path, variant)
    row = run_round(co, co.hospitals[0])
    assert row.state == "committed" and row.approvals >= 2 and row.score_global is not None
    assert co.client.head() == row.id
    metadata = json.loads(co.store.get(co.client.get_model(row.id).metadata_hash.hex()))
    assert metadata["training"]["samples"] == 16 and metadata["variant"] == variant.name
    assert metadata["data"]["files"] > 0 and "images" not in json.dumps(metadata["data"]).lower().split("files")[0]


def test_a_sign_flipping_member_is_voted_down(coalition_data: Path, tmp_path: Path) -> None:
    co = make(coalition_data, tmp_path, epochs=20)
    assert run_round(co, co.hospitals[0]).state == "committed"  # a head worth protecting
    co.hospitals[3].attack = Attack.SIGN_FLIP
    row = run_round(co, co.hospitals[3])
    assert row.byzantine and row.state == "rejected"
    assert co.client.head() != row.id


def test_a_backdoor_member_trains_with_its_own_loss(coalition_data: Path, tmp_path: Path) -> None:
    co = make(coalition_data, tmp_path, variant=Variant.A)
    parent = honest_weights(co)
    honest = co.backend.train(co.hospitals[3], parent, seed=0)
    co.hospitals[3].attack = Attack.BACKDOOR
    attacker = co.backend.train(co.hospitals[3], parent, seed=0)
    assert (honest.facts.loss, attacker.facts.loss) == ("dice", "dice_ce")


@pytest.mark.slow
def test_a_drifting_member_costs_g_less_than_the_tolerance_at_each_increment(
    coalition_data: Path, tmp_path: Path
) -> None:
    co = make(coalition_data, tmp_path, epochs=20)
    assert run_round(co, co.hospitals[0]).state == "committed"  # a head worth drifting from
    drifter = co.hospitals[3]
    drifter.attack, drifter.probe = Attack.DRIFT, co.global_test
    losses = []
    for _ in range(2):
        head = co.client.get_model(co.client.head(), with_uri=False).model_hash.hex()
        before = co.backend.score(drifter, co.backend.open(drifter, head), co.global_test, head).score
        row = run_round(co, drifter)
        assert row.byzantine and row.score_global is not None
        losses.append(before - row.score_global)
    # Never more than the tolerance; at least once something (G of 16 images moves in steps of up to 1/16: a
    # drifter that finds no smaller step submits its parent).
    assert all(0 <= loss < co.policy.tolerance_global for loss in losses) and max(losses) > 0, losses


def _assert_rejected_for(co: Coalition, model_id: int, check: str, ok: bool, report: dict[str, object]) -> None:
    assert not ok
    failed = [c for c in report["checks"] if not c["ok"]]  # type: ignore[union-attr]
    assert failed[0]["name"] == check, report
    m = co.client.get_model(model_id)
    assert m.state is ModelState.REJECTED
    rejected = [e for e in co.client.events() if e.name == "Rejected" and e.args["id"] == model_id]
    assert rejected[0].args["reason"] == RejectReason.INTEGRITY
    assert rejected[0].args["evidenceHash"].hex() == hashlib.sha256(canonical_json(report)).hexdigest()


def test_corrupted_blob_is_rejected_by_the_general(coalition_data: Path, tmp_path: Path) -> None:
    co = make(coalition_data, tmp_path)
    model_id = submit_weights(co, honest_weights(co))
    path = tmp_path / "vault" / co.client.get_model(model_id).model_hash.hex()
    stored = next(p for p in (tmp_path / "vault").rglob(path.name) if p.is_file() and p.stat().st_size > 1000)
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    ok, report = general_verdict(co, model_id)
    _assert_rejected_for(co, model_id, "weights", ok, report)
    assert "corrupt" in json.dumps(report) or "hash" in json.dumps(report)


def test_missing_blob_is_rejected(coalition_data: Path, tmp_path: Path) -> None:
    co = make(coalition_data, tmp_path)
    head = co.client.head()
    meta = put_record(co, honest_metadata(co))
    model_id = co.client.submit(co.hospitals[0].account, head, b"\x42" * 32, "u", bytes.fromhex(meta)).model_id
    ok, report = general_verdict(co, model_id)
    _assert_rejected_for(co, model_id, "blob", ok, report)


def test_nan_weights_are_rejected_naming_the_tensor(coalition_data: Path, tmp_path: Path) -> None:
    co = make(coalition_data, tmp_path)
    weights = honest_weights(co)
    name = next(k for k, v in weights.items() if v.is_floating_point())
    weights[name] = weights[name].clone().fill_(float("nan"))
    ok, report = general_verdict(co, submit_weights(co, weights))
    assert not ok and name in json.dumps(report) and "non-finite" in json.dumps(report)


def test_wrong_architecture_is_rejected(coalition_data: Path, tmp_path: Path) -> None:
    co = make(coalition_data, tmp_path)
    weights = honest_weights(co)
    weights.pop(next(iter(weights)))
    model_id = submit_weights(co, weights)
    ok, report = general_verdict(co, model_id)
    _assert_rejected_for(co, model_id, "weights", ok, report)
    assert "missing" in json.dumps(report)


@pytest.mark.parametrize(
    ("changes", "detail"),
    [({"parent": "00" * 32}, "names parent"), ({"variant": "A"}, "declares variant A"), ({"mode": "fedavg"}, None)],
)
def test_metadata_that_lies_is_rejected(
    coalition_data: Path, tmp_path: Path, changes: dict[str, object], detail: str | None
) -> None:
    co = make(coalition_data, tmp_path)
    if detail is None:  # a model description of another architecture
        other = dataclasses.replace(co.backend.describe(), fingerprint="00" * 32)
        changes, detail = {"model": other}, "declares model"
    model_id = submit_weights(co, honest_weights(co), metadata=honest_metadata(co, **changes).encode())
    ok, report = general_verdict(co, model_id)
    _assert_rejected_for(co, model_id, "declared", ok, report)
    assert detail in json.dumps(report)


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b'{"parent": null, "variant": "A", "training": {"batch_size": 8}}', "does not parse"),
        (b"not json at all", "does not parse"),
        (b'{"schema": 1}', "Field required"),
    ],
)
def test_metadata_that_does_not_parse_is_an_integrity_failure(
    coalition_data: Path, tmp_path: Path, raw: bytes, detail: str
) -> None:
    co = make(coalition_data, tmp_path)
    model_id = submit_weights(co, honest_weights(co), metadata=raw)
    ok, report = general_verdict(co, model_id)
    _assert_rejected_for(co, model_id, "metadata", ok, report)
    assert detail in json.dumps(report)


def test_a_metadata_record_of_another_schema_is_refused(coalition_data: Path, tmp_path: Path) -> None:
    co = make(coalition_data, tmp_path)
    raw = json.loads(honest_metadata(co).encode())
    raw["schema"] = 2
    model_id = submit_weights(co, honest_weights(co), metadata=canonical_json(raw))
    ok, report = general_verdict(co, model_id)
    _assert_rejected_for(co, model_id, "metadata", ok, report)
    assert "schema 2" in json.dumps(report)


def test_batch_size_below_policy_is_rejected(coalition_data: Path, tmp_path: Path) -> None:
    co = make(coalition_data, tmp_path)
    small = dataclasses.replace(honest_metadata(co).training, batch_size=2)
    model_id = submit_weights(co, honest_weights(co), metadata=honest_metadata(co, training=small).encode())
    ok, report = general_verdict(co, model_id)
    _assert_rejected_for(co, model_id, "policy", ok, report)
    assert "minimum 4" in json.dumps(report)


def test_metadata_hash_mismatch_is_rejected(coalition_data: Path, tmp_path: Path) -> None:
    co = make(coalition_data, tmp_path)
    head = co.client.head()
    model_hash = co.backend.store_model(honest_weights(co))
    absent = hashlib.sha256(b"metadata nobody stored").digest()
    model_id = co.client.submit(co.hospitals[0].account, head, bytes.fromhex(model_hash), "u", absent).model_id
    ok, report = general_verdict(co, model_id)
    _assert_rejected_for(co, model_id, "metadata", ok, report)


def test_silent_general_is_replaced_and_the_round_completes(coalition_data: Path, tmp_path: Path) -> None:
    co = make(coalition_data, tmp_path)
    proposal = propose(co, co.hospitals[0])
    model_id = proposal.submission.model_id
    silent = co.client.get_model(model_id).general
    co.client.chain.advance_time(4000)
    assert keep(co.client, co.hospitals[0].account, model_id, co.client.chain.timestamp()) == "reassigned"
    candidate = co.client.get_model(model_id)
    assert candidate.general != silent
    ok, _, _ = general_duty.open_candidate(co, co.hospital(candidate.general), candidate)
    assert ok


def test_a_validator_that_never_votes_does_not_block_the_commit(coalition_data: Path, tmp_path: Path) -> None:
    co = make(coalition_data, tmp_path)
    co.policy = AcceptancePolicy(1.0, 1.0)  # about quorum, not learning: every honest validator approves
    proposal = propose(co, co.hospitals[0])
    candidate = co.client.get_model(proposal.submission.model_id)
    general_duty.open_candidate(co, co.hospital(candidate.general), candidate)
    voters = co.hospitals[1:]  # eligible = 3: two approvals commit, the third never votes
    # signed votes: the first is posted, the second completes a deciding set and sends both in one `decide`
    states = [validator_duty.vote(co, v, candidate).state for v in voters[:2]]
    assert states == [None, ModelState.COMMITTED]
    voted = {e.args["validator"] for e in co.client.events() if e.name == "Voted" and e.args["id"] == candidate.id}
    assert voted == {v.address for v in voters[:2]}


def test_a_candidate_that_goes_stale_is_rebased(coalition_data: Path, tmp_path: Path) -> None:
    co = make(coalition_data, tmp_path)
    late = propose(co, co.hospitals[1])  # trained on genesis, then overtaken
    assert run_round(co, co.hospitals[0]).state == "committed"
    voter = co.hospitals[2]
    candidate = co.client.get_model(late.submission.model_id)
    assert co.client.get_model(candidate.id).parent_id == 0
    co.client.mark_stale(voter.account, candidate.id)
    assert co.client.get_model(candidate.id).state is ModelState.STALE
    again = propose(co, co.hospitals[1])  # the member retrains from the new head
    assert co.client.get_model(again.submission.model_id).parent_id == co.client.head()


def test_data_folder_in_the_wrong_layout_names_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "global" / "images").mkdir(parents=True)
    (tmp_path / "h1" / "train" / "images").mkdir(parents=True)
    (tmp_path / "h2" / "train").mkdir(parents=True)
    with pytest.raises(NotFoundError, match=r"global/masks") as info:
        hospital_folders(tmp_path, 2, Images())
    assert "h1/test/images" in str(info.value)


# ---- fedavg mode: verifiable aggregation ------------------------------------------------------------------


def _fedavg_candidate(co: Coalition, rule: Aggregator) -> int:
    head = co.client.head()
    contributions = [contribute(co, h, head) for h in co.hospitals[:3]]
    return propose_aggregate(co, co.hospitals[0], rule, contributions, head).submission.model_id


@pytest.mark.parametrize("rule", list(Aggregator))
def test_validators_accept_the_exact_aggregate(coalition_data: Path, tmp_path: Path, rule: Aggregator) -> None:
    co = make(coalition_data, tmp_path)
    model_id = _fedavg_candidate(co, rule)
    candidate = co.client.get_model(model_id)
    metadata = CandidateMetadata.parse(co.store.get(candidate.metadata_hash.hex()))
    weights = co.backend.open(co.hospitals[1], candidate.model_hash.hex())
    assert metadata.aggregation is not None and metadata.mode == "fedavg"
    assert verify_aggregate(co, co.hospitals[1], metadata.aggregation, candidate.parent_id, weights) is None
    assert len(metadata.aggregation.contributions) == 3 and metadata.aggregation.rule == rule.value
    assert metadata.training.samples == 3 * 16


def test_a_cheating_aggregator_is_caught(coalition_data: Path, tmp_path: Path) -> None:
    co = make(coalition_data, tmp_path)
    co.policy = dataclasses.replace(co.policy, max_update=0)  # no bound: the validators, not the general, see it
    co.hospitals[3].attack = Attack.RANDOM_WEIGHTS
    row = run_fedavg_round(co, co.hospitals[3], Aggregator.MEDIAN)
    assert row.byzantine and row.state == "rejected" and row.score_global is None
    evidence = [e for e in co.client.events() if e.name == "Voted" and e.args["id"] == row.id]
    reasons = [json.loads(co.store.get(e.args["evidenceHash"].hex()))["reason"] for e in evidence]
    assert all("not the median of its listed contributions" in r for r in reasons)


@pytest.mark.parametrize("tamper", ["signer", "stranger", "twice", "other_parent"])
def test_forged_contribution_lists_are_caught(coalition_data: Path, tmp_path: Path, tamper: str) -> None:
    co = make(coalition_data, tmp_path)
    model_id = _fedavg_candidate(co, Aggregator.FEDAVG)
    candidate = co.client.get_model(model_id)
    metadata = CandidateMetadata.parse(co.store.get(candidate.metadata_hash.hex()))
    weights = co.backend.open(co.hospitals[1], candidate.model_hash.hex())
    assert metadata.aggregation is not None
    entries = list(metadata.aggregation.contributions)
    if tamper == "signer":  # claims another member's name for its contribution
        entries[0] = dataclasses.replace(entries[0], member=co.hospitals[3].address)
        expected = "not by the member it names"
    elif tamper == "stranger":  # a contribution signed by an account that is not a member
        stranger = co.client.chain.dev_keys[-1]
        text = message(co.client.chain.chain_id, co.client.address, candidate.parent_id, entries[0].model_hash)
        signature = "0x" + stranger.sign_message(encode_defunct(text=text)).signature.hex().removeprefix("0x")
        entries[0] = dataclasses.replace(entries[0], member=stranger.address, signature=signature)
        expected = "not an active member"
    elif tamper == "twice":
        entries[1] = entries[0]
        expected = "contributes twice"
    parent = candidate.parent_id
    if tamper == "other_parent":  # replayed into another round: each signature binds its parent
        parent, expected = parent + 1, "is signed by"
    forged = Aggregation(metadata.aggregation.rule, tuple(entries))
    problem = verify_aggregate(co, co.hospitals[1], forged, parent, weights)
    assert problem is not None and expected in problem


def _boosted(parent: dict[str, torch.Tensor], child: dict[str, torch.Tensor], size: float) -> dict[str, torch.Tensor]:
    """`child`'s update scaled to `size` times the parent's norm, as a model replacement boosts its backdoor."""
    scale = size / update_norm(parent, child)
    return {k: parent[k] + scale * (v - parent[k]) if v.dtype.is_floating_point else v for k, v in child.items()}


def _round_with_a_boosted_contribution(co: Coalition) -> tuple[int, Contribution]:
    """Three honest contributions and hospital 3's boosted one (3x the bound); hospital 0 aggregates."""
    head = co.client.head()
    shares = [contribute(co, h, head) for h in co.hospitals]
    parent = honest_weights(co)
    contribution, facts = shares[3]
    child = co.backend.open(co.hospitals[3], contribution.model_hash)
    boosted = signed(co, co.hospitals[3], head, parent, _boosted(parent, child, 3 * co.policy.max_update), facts)
    shares[3] = (boosted, facts)
    return propose_aggregate(co, co.hospitals[0], Aggregator.FEDAVG, shares, head).submission.model_id, boosted


def test_the_aggregator_leaves_out_a_contribution_beyond_the_bound(coalition_data: Path, tmp_path: Path) -> None:
    co = make(coalition_data, tmp_path)
    model_id, boosted = _round_with_a_boosted_contribution(co)
    candidate = co.client.get_model(model_id)
    metadata = CandidateMetadata.parse(co.store.get(candidate.metadata_hash.hex()))
    assert metadata.aggregation is not None and metadata.update_norm is not None
    assert [c.member for c in metadata.aggregation.contributions] == [h.address for h in co.hospitals[:3]]
    (excluded,) = metadata.aggregation.excluded
    assert excluded.contribution == boosted and "beyond the coalition's bound" in excluded.reason
    assert boosted.update_norm == pytest.approx(3 * co.policy.max_update)
    weights = co.backend.open(co.hospitals[1], candidate.model_hash.hex())
    assert verify_aggregate(co, co.hospitals[1], metadata.aggregation, candidate.parent_id, weights) is None
    assert general_verdict(co, model_id)[0]  # the aggregate's own update is within the bound


@pytest.mark.parametrize("tamper", ["honest left out", "boosted listed"])
def test_validators_catch_a_wrongly_screened_aggregate(coalition_data: Path, tmp_path: Path, tamper: str) -> None:
    co = make(coalition_data, tmp_path)
    model_id, _ = _round_with_a_boosted_contribution(co)
    candidate = co.client.get_model(model_id)
    metadata = CandidateMetadata.parse(co.store.get(candidate.metadata_hash.hex()))
    assert metadata.aggregation is not None
    kept, excluded = list(metadata.aggregation.contributions), list(metadata.aggregation.excluded)
    if tamper == "honest left out":  # an aggregator that drops honest work, claiming it was too large
        excluded.append(Exclusion(kept.pop(0), "the update is 5 of its parent's norm, beyond the bound"))
        expected = "was left out without cause"
    else:  # an aggregator that lets the boosted one in
        kept.append(excluded.pop().contribution)
        expected = f"should have been left out: the update is {3 * co.policy.max_update:g} of its parent's norm"
    forged = Aggregation(metadata.aggregation.rule, tuple(kept), tuple(excluded))
    states = [(co.backend.open(co.hospitals[0], c.model_hash), c.samples) for c in kept]
    weights = fedavg_of(states)  # the forged list's exact aggregate: only the screening is wrong
    problem = verify_aggregate(co, co.hospitals[1], forged, candidate.parent_id, weights)
    assert problem is not None and expected in problem, problem


def test_colluding_members_submit_a_little_is_enough(coalition_data: Path, tmp_path: Path) -> None:
    co = make(coalition_data, tmp_path)
    co.hospitals[2].attack = co.hospitals[3].attack = Attack.LITTLE_IS_ENOUGH
    row = run_fedavg_round(co, co.hospitals[0], collude=little_is_enough_round)
    metadata = CandidateMetadata.parse(co.store.get(co.client.get_model(row.id).metadata_hash.hex()))
    assert metadata.aggregation is not None and metadata.aggregation.rule == co.policy.aggregator == "median"
    listed = {c.member: c for c in metadata.aggregation.contributions}
    assert set(listed) == {h.address for h in co.hospitals}  # a little is within the bound
    honest = [co.backend.open(co.hospitals[0], listed[h.address].model_hash) for h in co.hospitals[:2]]
    expected = little_is_enough(honest, z_of(4, 2))
    for colluder in co.hospitals[2:]:
        forged = co.backend.open(co.hospitals[0], listed[colluder.address].model_hash)
        assert all(torch.equal(forged[k], expected[k]) for k in expected)


def test_propose_reports_its_phases_and_a_cancel_submits_nothing(coalition_data: Path, tmp_path: Path) -> None:
    co = make(coalition_data, tmp_path, variant=Variant.A)
    phases: list[tuple[str, float]] = []
    proposal = propose(co, co.hospitals[0], progress=lambda phase, done: phases.append((phase, done)))
    assert [p for p, _ in phases if _ == 0.0] == ["pulling", "training", "storing", "submitting"]
    assert ("training", 1.0) in phases and phases[-1] == ("submitting", 1.0)
    assert co.client.head() == 0 and co.client.model_count() == proposal.submission.model_id + 1

    token = CancelToken()
    cancel_when_stored = lambda phase, _done: token.cancel() if phase == "storing" else None  # noqa: E731
    with pytest.raises(TrainingCancelled, match="before submitting"):
        propose(co, co.hospitals[1], cancel=token, progress=cancel_when_stored)
    assert co.client.model_count() == proposal.submission.model_id + 1
