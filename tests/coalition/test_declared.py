"""The acceptance policy a coalition declares on chain: stored at founding, read back by every site when its
coalition is built, and refused when it is missing, broken or not what the site expects."""

from __future__ import annotations

import dataclasses
import json
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from tclearn.coalition.build import build
from tclearn.coalition.context import Coalition
from tclearn.coalition.declared import policy_file
from tclearn.coalition.founding import Founder, found
from tclearn.coalition.policy import AcceptancePolicy, PrivacyPolicy
from tclearn.errors import ConfigError, IntegrityError, NotFoundError
from tclearn.learning.choices import Aggregator
from tclearn.learning.models import ModelConfig
from tclearn.learning.train import TrainConfig
from tclearn.ledger.chain import embedded_chain
from tclearn.ledger.governance import Admit, Parameters, SetParameters
from tclearn.ledger.history import rebuild
from tclearn.ledger.memory import InMemoryLedger, MemoryChain
from tclearn.simulation.demo import DemoSettings, chosen_aggregator
from tclearn.simulation.up import UpSettings
from tclearn.site.config import PolicySection
from tclearn.types import Role, Variant
from tclearn.vault.store import FsspecStore
from tests.coalition.fakes import accounts, images
from tests.governing import govern

CHAIN_POLICY = AcceptancePolicy(tolerance_global=0.02, tolerance_local=0.2, min_batch_size=4, max_drift=0.04)


def declared(policy_blob: bytes) -> tuple[InMemoryLedger, FsspecStore, bytes]:
    """A coalition on the in-memory ledger whose policy hash is `policy_blob`'s, the blob stored in its vault."""
    store = FsspecStore(f"memory://declared-{uuid.uuid4().hex}")
    digest = bytes.fromhex(store.put(policy_blob))
    deployer, founder = accounts(2)
    ledger, _ = InMemoryLedger.deploy(
        MemoryChain(),
        deployer,
        variant=Variant.A,
        genesis_hash=b"\x01" * 32,
        parameters=Parameters(policy_hash=digest, min_validators=0),
        founders=[Admit(founder.address, Role.MEMBER, name="founder")],
    )
    return ledger, store, digest


def built(ledger: InMemoryLedger, store: FsspecStore, expected: dict[str, object] | None = None) -> Coalition:
    model = ModelConfig("unet")  # type: ignore[arg-type]
    return build(ledger, store, [], images("global", 2), model=model, training=TrainConfig(), expected_policy=expected)


def test_a_coalition_is_built_with_the_policy_the_chain_declares() -> None:
    ledger, store, _ = declared(CHAIN_POLICY.encode())
    assert built(ledger, store).policy == CHAIN_POLICY
    newer = AcceptancePolicy(tolerance_global=0.01)
    changed = ledger.parameters().replace(policy_hash=bytes.fromhex(store.put(newer.encode())))
    govern(ledger, accounts(2), SetParameters(changed))  # its one founder carries it alone
    assert built(ledger, store).policy == newer  # a site built after the change applies the new one


def test_a_site_that_pins_the_chain_s_values_is_built() -> None:
    ledger, store, _ = declared(CHAIN_POLICY.encode())
    pins = {"tolerance_global": 0.02, "max_drift": 0.04, "aggregator": "median"}
    assert built(ledger, store, pins).policy == CHAIN_POLICY


def test_a_site_expecting_another_policy_is_refused_naming_each_setting_and_the_hash_on_chain() -> None:
    ledger, store, digest = declared(CHAIN_POLICY.encode())
    with pytest.raises(ConfigError) as refused:
        built(ledger, store, {"tolerance_global": 0.03, "tolerance_local": 0.2, "max_drift": 0.1})
    message = str(refused.value)
    assert "tolerance_global is 0.02, not 0.03; max_drift is 0.04, not 0.1" in message
    assert "tolerance_local" not in message and "0x" + digest.hex() in message
    with pytest.raises(ConfigError, match="no acceptance policy setting is named tolerance"):
        built(ledger, store, {"tolerance": 0.03})


def test_a_missing_policy_record_is_named() -> None:
    ledger, store, digest = declared(CHAIN_POLICY.encode())
    store.fs.rm(store.blob_path(digest.hex()))
    with pytest.raises(NotFoundError, match=f"acceptance policy 0x{digest.hex()} .* is not in the vault"):
        built(ledger, store)


@pytest.mark.parametrize(
    ("blob", "why"),
    [
        (b"not json", "does not parse"),
        (json.dumps({**CHAIN_POLICY.to_json(), "tolerance_global": 7}).encode(), "tolerance_global must be between"),
        (json.dumps({**CHAIN_POLICY.to_json(), "veto": True}).encode(), "veto"),
        (json.dumps({**CHAIN_POLICY.to_json(), "schema": 2}).encode(), "schema 2"),
    ],
)
def test_a_record_that_is_no_policy_is_refused_naming_the_hash(blob: bytes, why: str) -> None:
    ledger, store, digest = declared(blob)
    with pytest.raises(IntegrityError, match=f"0x{digest.hex()} is no policy this node can apply: .*{why}"):
        built(ledger, store)


def test_founding_stores_the_policy_and_declares_its_hash() -> None:
    chain = embedded_chain(2)
    store = FsspecStore(f"memory://founding-{uuid.uuid4().hex}")
    genesis = store.put(b"a genesis already in the vault")
    with pytest.raises(ConfigError, match="at least one founder"):
        found(chain, chain.dev_keys[0], store, Variant.A, genesis, [], policy=CHAIN_POLICY)
    founder = Founder(chain.dev_keys[1].address, b"\x00" * 32, "founder")
    private = dataclasses.replace(CHAIN_POLICY, privacy=PrivacyPolicy(epsilon_cap=8.0))
    client, _ = found(chain, chain.dev_keys[0], store, Variant.A, genesis, [founder], policy=private)
    assert client.policy_hash() == bytes.fromhex(private.sha256())
    assert client.parameters().epsilon_cap == 8_000_000  # the policy's privacy cap, in millionths
    assert AcceptancePolicy.parse(store.get(private.sha256())) == private
    assert [p.hash for p in rebuild(client.events()).policies] == [client.policy_hash()]
    plain, _ = found(chain, chain.dev_keys[0], store, Variant.A, genesis, [founder], policy=CHAIN_POLICY)
    assert plain.parameters().epsilon_cap == 0  # no privacy rules: no cap kept


@pytest.mark.parametrize(
    ("section", "named"),
    [({"tolerance_global": 1.5}, "tolerance_global"), ({"aggregator": "mean"}, "aggregator"), ({"veto": 1}, "veto")],
)
def test_a_site_s_policy_section_is_checked_by_the_policy_s_own_bounds(section: dict[str, object], named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        PolicySection.model_validate(section)
    assert PolicySection().expected() == {}
    assert PolicySection(tolerance_global=0.05).expected() == {"tolerance_global": 0.05}


# ---- a policy file to found a simulated coalition with (`tclearn demo --policy`, `coalition up --policy`) ------


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (None, "cannot read the policy file"),
        (b"{", "is no acceptance policy"),
        (b'{"max_drift": 0.5, "tolerance": 1}', "tolerance: Unexpected keyword argument"),
        (AcceptancePolicy().encode().replace(b'"max_drift":0.05', b'"max_drift":2.0'), "max_drift must be between"),
    ],
)
def test_a_policy_file_that_is_no_policy_is_named(tmp_path: Path, content: bytes | None, named: str) -> None:
    path = tmp_path / "policy.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=named) as raised:
        policy_file(path)
    assert str(path) in str(raised.value)


def test_a_policy_file_is_read_as_written(tmp_path: Path) -> None:
    wanted = AcceptancePolicy(max_drift=0.04, tolerance_stratum=0.2)
    (tmp_path / "policy.json").write_bytes(wanted.encode())
    assert policy_file(tmp_path / "policy.json") == wanted


@pytest.mark.parametrize(
    ("given", "file_rule", "chosen"),
    [
        (None, None, Aggregator.MEDIAN),  # the default policy's
        (None, "trimmed_mean", Aggregator.TRIMMED_MEAN),  # the file's
        (Aggregator.FEDAVG, None, Aggregator.FEDAVG),  # the option's
        (Aggregator.FEDAVG, "fedavg", Aggregator.FEDAVG),  # both, agreeing
        (Aggregator.FEDAVG, "median", None),  # both, contradicting
    ],
)
def test_the_run_s_aggregator(given: Aggregator | None, file_rule: str | None, chosen: Aggregator | None) -> None:
    acceptance = None if file_rule is None else AcceptancePolicy(aggregator=file_rule)
    if chosen is None:
        with pytest.raises(ConfigError, match="--aggregator fedavg contradicts the policy file's aggregator median"):
            chosen_aggregator(given, acceptance)
    else:
        assert chosen_aggregator(given, acceptance) is chosen


def test_a_policy_whose_smallest_batch_no_member_trains_is_refused_before_the_run() -> None:
    with pytest.raises(ConfigError, match="min_batch_size 64 is above the demo's batch size 8"):
        DemoSettings(acceptance=AcceptancePolicy(min_batch_size=64))
    with pytest.raises(ConfigError, match="min_batch_size 64 is above the sites' batch size 8"):
        UpSettings(policy=AcceptancePolicy(min_batch_size=64))
    assert DemoSettings(acceptance=AcceptancePolicy(max_drift=0.01)).policy().max_drift == 0.01
