"""A stub model backend and a coalition on the in-memory ledger, for unit tests of the duties (as Flower tests
its strategies with a stub client): no torch model, no chain, every duty runs in milliseconds.

A stub "model" is a dict of floats: `w`, what it scores by, and `by`, a number naming who trained it (so that
two members' increments of one head are two blobs). Scores are `w / 10` clipped to [0, 1] on G, and
`LOCAL_PENALTY` less on a hospital's L, so a test makes a candidate better or worse than the head by its `w`.
Each set has two strata, its first half `finding:small` and the rest `finding:large`, scored as the set, but
for a model's optional `small` (what it lost on small findings: a targeted attack keeps `w` and sets it).
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections import Counter
from dataclasses import dataclass, field
from functools import cache

import torch
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account.signers.local import LocalAccount

from tclearn.canonical import canonical_json
from tclearn.coalition.backend import Admission, OnStep, Trained
from tclearn.coalition.context import Clock, Coalition, Hospital
from tclearn.coalition.founding import Founder, found
from tclearn.coalition.policy import AcceptancePolicy, chain_cap
from tclearn.errors import IntegrityError, TrainingCancelled
from tclearn.learning.attacks import Attack
from tclearn.learning.data import ImageData, Task
from tclearn.learning.manifest import Manifest, ManifestEntry
from tclearn.learning.strata import Scored, StratumScore
from tclearn.learning.train import CancelToken
from tclearn.ledger.accounts import dev_accounts
from tclearn.ledger.chain import embedded_chain
from tclearn.ledger.directory import ChainDirectory
from tclearn.ledger.governance import DEFAULT_MIN_VALIDATORS, Admit, Parameters
from tclearn.ledger.memory import InMemoryLedger, MemoryChain
from tclearn.records import ModelDescription, Privacy, TrainingFacts
from tclearn.types import Role, Variant
from tclearn.vault.store import BlobStore, FsspecStore

StubModel = dict[str, float]
DESCRIPTION = ModelDescription("stub", {"w": "float"}, "ab" * 32)
GENESIS_W = 5.0  # a head worth protecting: it scores 0.5 on G
LOCAL_PENALTY = 0.05
DRIFT_STEP = 0.028
STEPS = 2  # training steps reported to `on_step`
BATCH_SIZE = 8
TARGETED_LOSS = 0.5  # what a targeted attacker's increment loses on small findings


def clip(x: float) -> float:
    return min(1.0, max(0.0, x))


@dataclass
class StubBackend:
    """`ModelBackend[StubModel]` over canonical JSON blobs; counts every `score` call in `scored`."""

    store: BlobStore
    clock: Clock = field(default_factory=Clock)
    variant: Variant = Variant.A
    scored: Counter[tuple[str, str]] = field(default_factory=Counter)  # (reader address, model hash) -> calls
    privacy: Privacy | None = None  # what each increment declares it spent, as a DP-SGD run would (admit sees it)

    @property
    def private(self) -> bool:
        return self.privacy is not None

    def describe(self) -> ModelDescription:
        return DESCRIPTION

    def store_model(self, model: StubModel) -> str:
        return self.store.put(canonical_json(model))

    def open(self, reader: Hospital, model_hash: str) -> StubModel:
        raw = self.store.get(model_hash)  # NotFoundError, or IntegrityError when the bytes are not their hash
        try:
            model = json.loads(raw)
        except ValueError:  # UnicodeDecodeError included
            raise IntegrityError(f"model {model_hash} does not decode") from None
        if not isinstance(model, dict) or "w" not in model:
            raise IntegrityError(f"model {model_hash} is not the coalition's model: {raw[:40]!r}")
        if not all(isinstance(v, int | float) and math.isfinite(v) for v in model.values()):
            raise IntegrityError(f"model {model_hash} holds non-finite or non-numeric values")
        return {k: float(v) for k, v in model.items()}

    def inspect(self, reader: Hospital, model: StubModel, ref: str) -> str | None:
        return None  # `open` checked it all

    def update_size(self, parent: StubModel, model: StubModel) -> float | None:
        """`|w - parent w| / |parent w|`: a stub model's only weight is `w`."""
        return abs(model["w"] - parent["w"]) / abs(parent["w"]) if parent["w"] else math.inf

    def train(
        self,
        member: Hospital,
        parent: StubModel,
        *,
        seed: int,
        ref: str = "",
        cancel: CancelToken | None = None,
        on_step: OnStep | None = None,
        admit: Admission | None = None,
    ) -> Trained[StubModel]:
        if self.privacy is not None and admit is not None:
            admit(self.privacy)
        for step in range(STEPS):
            if cancel is not None and cancel.cancelled:
                raise TrainingCancelled("training cancelled", phase="training")
            if on_step is not None:
                on_step(step + 1, STEPS)
        w, lost = parent["w"] + 1, {}
        if member.attack is Attack.SIGN_FLIP:
            w = -w
        elif member.attack is Attack.DRIFT:  # G DRIFT_STEP lower each time: less than the tolerance of 0.03
            w = parent["w"] - DRIFT_STEP * 10
        elif member.attack is Attack.TARGETED:
            lost = {"small": TARGETED_LOSS}  # better on the whole set, worse on small findings
        elif member.attack is not Attack.NONE:
            raise NotImplementedError(f"the stub backend has no {member.attack} attack")
        facts = TrainingFacts(len(member.train), 1, BATCH_SIZE, "sgd", 0.1, seed, "stub", STEPS, 0.0, "cpu")
        return Trained({"w": w, "by": float(int(member.address, 16) % 10**6), **lost}, facts, self.privacy)

    def score(self, reader: Hospital, model: StubModel, data: ImageData, ref: str) -> Scored:
        self.scored[(reader.address, ref)] += 1
        penalty = 0.0 if data.names[0].startswith("global") else LOCAL_PENALTY
        score, half = clip(model["w"] / 10 - penalty), len(data) // 2
        small = StratumScore("finding:small", half, clip(score - model.get("small", 0.0)))
        return Scored(score, (small, StratumScore("finding:large", len(data) - half, score)))


def images(prefix: str, n: int) -> ImageData:
    """`n` blank 2x2 images and masks: the stub only ever reads `len()` and the names."""
    return ImageData(
        Task.SEGMENTATION, torch.zeros(n, 1, 2, 2), torch.zeros(n, 1, 2, 2), tuple(f"{prefix}{i}" for i in range(n))
    )


@cache
def accounts(n: int) -> tuple[LocalAccount, ...]:
    return tuple(dev_accounts(n))


def stub_hospital(index: int, account: LocalAccount) -> Hospital:
    """Hospital `h{index}`: a fresh X25519 key, 8 training and 2 local test images."""
    name = f"h{index}"
    entry = ManifestEntry(f"{name}/train/images/0.png", 4, hashlib.sha256(name.encode()).hexdigest())
    return Hospital(
        name,
        account,
        X25519PrivateKey.generate(),
        images(f"{name}-train", 8),
        images(f"{name}-test", 2),
        Manifest((entry,)),
    )


def stub_coalition(
    members: int = 4, *, genesis_w: float = GENESIS_W, policy: AcceptancePolicy | None = None
) -> Coalition:
    """An `InMemoryLedger` coalition founded by `members` MEMBER|VALIDATOR hospitals, its genesis stored through
    the `StubBackend`, its vault in memory (the deployer is `accounts()[0]`, no member)."""
    deployer, *others = accounts(members + 2)
    store = FsspecStore(f"memory://stub-{uuid.uuid4().hex}")
    backend = StubBackend(store)
    genesis = backend.store_model({"w": genesis_w})
    policy = policy or AcceptancePolicy(min_batch_size=4)
    hospitals = [stub_hospital(i, account) for i, account in enumerate(others[:members])]
    founders = [
        Admit(h.address, Role.MEMBER | Role.VALIDATOR, h.key.public_key().public_bytes_raw(), h.name) for h in hospitals
    ]
    parameters = Parameters(
        policy_hash=bytes.fromhex(store.put(policy.encode())),
        min_validators=min(members, DEFAULT_MIN_VALIDATORS),
        epsilon_cap=chain_cap(policy),
    )
    ledger, _ = InMemoryLedger.deploy(
        MemoryChain(),
        deployer,
        variant=Variant.A,
        genesis_hash=bytes.fromhex(genesis),
        parameters=parameters,
        founders=founders,
    )
    return Coalition(
        client=ledger,
        store=store,
        backend=backend,
        policy=policy,
        global_test=images("global", 4),
        hospitals=hospitals,
        directory=ChainDirectory(ledger),
    )


def stub_backend(co: Coalition) -> StubBackend:
    backend = co.backend
    assert isinstance(backend, StubBackend)
    return backend


def chain_stub_coalition(members: int = 4, *, policy: AcceptancePolicy | None = None) -> Coalition:
    """`members` MEMBER|VALIDATOR stub hospitals founding a coalition on a fresh embedded chain (the `StubBackend`,
    the vault in memory, signed votes); the deployer `chain.dev_keys[0]` is not a member."""
    chain = embedded_chain(members + 4)
    deployer, *others = chain.dev_keys
    store = FsspecStore(f"memory://stub-{uuid.uuid4().hex}")
    backend = StubBackend(store)
    genesis = backend.store_model({"w": GENESIS_W})
    policy = policy or AcceptancePolicy(min_batch_size=4)
    hospitals = [stub_hospital(i, account) for i, account in enumerate(others[:members])]
    founders = [Founder(h.address, h.key.public_key().public_bytes_raw(), h.name) for h in hospitals]
    client, _ = found(chain, deployer, store, Variant.A, genesis, founders, policy=policy)
    return Coalition(client, store, backend, policy, images("global", 4), hospitals, ChainDirectory(client))
