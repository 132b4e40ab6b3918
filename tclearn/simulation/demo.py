"""The embedded coalition demo: hospitals with domain-shifted data train one model together on a chain.

Sets up a coalition (data, keys, genesis model, contract, members), runs incremental rounds through the
real duties, trains the seed-001-style baselines with the same budget (each hospital alone; all data
pooled), audits every blob against the chain, and summarises it all. Variant C (an encrypted logistic
regression on feature tables, a supervisor holding the key) is set up in `encrypted_demo`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from torch import nn

from tclearn.audit.verify import AuditReport, audit
from tclearn.coalition.blobs import load_model
from tclearn.coalition.context import PHASES, Coalition, Hospital
from tclearn.coalition.fedavg import Aggregator
from tclearn.coalition.founding import Founder, found, genesis_weights
from tclearn.coalition.policy import AcceptancePolicy
from tclearn.coalition.rounds import CandidateRow, run_fedavg_round, run_round
from tclearn.coalition.validator import metric_name
from tclearn.errors import ConfigError, NotFoundError
from tclearn.learning.attacks import Attack
from tclearn.learning.data import ImageData, load_segmentation
from tclearn.learning.defaults import COALITION_TRAINING, ENCRYPTED_TRAINING
from tclearn.learning.evaluate import evaluate
from tclearn.learning.manifest import fingerprint
from tclearn.learning.models import ModelConfig, build_model
from tclearn.learning.synth import GLOBAL, synth_coalition
from tclearn.learning.tabular import GLOBAL_CSV
from tclearn.learning.train import TrainConfig, train_increment
from tclearn.ledger.chain import Chain
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.directory import ChainDirectory
from tclearn.ledger.history import LedgerHistory, rebuild
from tclearn.types import Variant
from tclearn.vault.envelope import public_bytes
from tclearn.vault.store import FsspecStore

MODES = ("incremental", "fedavg")
# The demo's UNet is wider than the zoo's CPU default (8-16-32): a round's ledger, vault and crypto work is a
# fixed ~0.1 s, and with this model training and validation take over 90% of a round (bench/coalition.py).
DEMO_OPTIONS: dict[str, dict[str, Any]] = {"unet": {"channels": [32, 64, 128], "strides": [2, 2]}}
# Epochs per increment, above the coalition default (COALITION_TRAINING): the wider UNet needs them to reach the
# figures of docs/coalition.md, and training is then ~90% of a round (bench/coalition.py).
DEMO_EPOCHS = 12


@dataclass(frozen=True)
class DemoSettings:
    members: int = 4
    byzantine: int = 1
    attack: Attack = Attack.SIGN_FLIP
    variant: Variant = Variant.B
    mode: str = "incremental"
    aggregator: Aggregator = Aggregator.MEDIAN  # fedavg mode: how the round's aggregator combines contributions
    rounds: int = 6
    model: str = "unet"
    seed: int = 0
    epochs: int = DEMO_EPOCHS
    batch_size: int = COALITION_TRAINING.batch_size
    lr: float = COALITION_TRAINING.lr
    min_batch_size: int = COALITION_TRAINING.min_batch_size
    tolerance_global: float = AcceptancePolicy.tolerance_global
    tolerance_local: float = AcceptancePolicy.tolerance_local
    data: Path | None = None
    label_column: str = "label"  # variant C: the label column of the CSV files
    features: int = 8  # variant C, synthetic data: features per sample
    he_steps: int = ENCRYPTED_TRAINING.steps  # variant C: full-batch encrypted gradient steps per increment
    he_lr: float = ENCRYPTED_TRAINING.lr  # variant C: their learning rate

    @property
    def accounts(self) -> int:
        """Funded keys the run needs: the admin, the members, and in variant C the supervisor."""
        return self.members + 1 + (self.variant is Variant.C)

    def __post_init__(self) -> None:
        if self.members < 2:
            raise ConfigError(f"--members must be at least 2 (a proposer and a validator), got {self.members}")
        if not 0 <= self.byzantine < self.members:
            raise ConfigError(f"--byzantine must be between 0 and members - 1, got {self.byzantine}")
        if self.rounds < 1:
            raise ConfigError(f"--rounds must be at least 1, got {self.rounds}")
        object.__setattr__(self, "attack", Attack(self.attack))
        object.__setattr__(self, "variant", Variant.parse(self.variant))
        try:
            object.__setattr__(self, "aggregator", Aggregator(self.aggregator))
        except ValueError:
            raise ConfigError(
                f"unknown aggregator {self.aggregator!r}; expected one of {', '.join(a.value for a in Aggregator)}"
            ) from None
        if self.variant is Variant.C and self.mode != "incremental":
            raise ConfigError("variant C (encrypted model) runs in incremental mode only")
        if self.he_steps < 1:
            raise ConfigError(f"he_steps must be at least 1, got {self.he_steps}")
        if self.mode not in MODES:
            raise ConfigError(f"mode {self.mode!r} is not implemented yet; available: {', '.join(MODES)}")
        if self.byzantine and self.attack is Attack.NONE:
            raise ConfigError("--byzantine members need an --attack other than 'none'")


IMAGE_LAYOUT = ((f"{GLOBAL}/images", f"{GLOBAL}/masks"), ("train/images", "train/masks", "test/images", "test/masks"))
TABLE_LAYOUT = ((GLOBAL_CSV,), ("train.csv", "test.csv"))  # variant C: feature tables


def hospital_folders(root: Path, members: int, variant: Variant = Variant.B) -> list[Path]:
    """The first `members` hospital folders of a coalition folder, checked for the variant's layout."""
    if not root.is_dir():
        raise NotFoundError(f"data folder {root} does not exist")
    shared, own = TABLE_LAYOUT if variant is Variant.C else IMAGE_LAYOUT
    required = [root / part for part in shared]
    folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name != GLOBAL and not p.name.startswith("."))
    if len(folders) < members:
        raise ConfigError(f"{root} holds {len(folders)} hospital folder(s); {members} are needed")
    for folder in folders[:members]:
        required += [folder / part for part in own]
    missing = [str(p) for p in required if not p.exists()]
    if missing:
        raise NotFoundError(f"{root} is not in the coalition layout; missing: {', '.join(missing)}")
    return folders[:members]


def check_keys(settings: DemoSettings, chain: Chain) -> None:
    if len(chain.dev_keys) < settings.accounts:
        raise ConfigError(f"the chain funds {len(chain.dev_keys)} keys; {settings.accounts} are needed")


def byzantine_attack(settings: DemoSettings, index: int) -> Attack:
    """The last `byzantine` hospitals attack; the others are honest."""
    return settings.attack if index >= settings.members - settings.byzantine else Attack.NONE


def setup(settings: DemoSettings, chain: Chain, out: Path) -> tuple[Coalition, dict[str, torch.Tensor]]:
    root = settings.data
    if root is None:
        root = out / "data"
        synth_coalition(root, hospitals=settings.members, seed=settings.seed)
    folders = hospital_folders(root, settings.members)
    check_keys(settings, chain)
    admin, accounts = chain.dev_keys[0], chain.dev_keys[1 : settings.members + 1]
    hospitals = [
        Hospital(
            folder.name,
            account,
            X25519PrivateKey.generate(),
            load_segmentation(folder / "train"),
            load_segmentation(folder / "test"),
            fingerprint(folder / "train"),
            byzantine_attack(settings, i),
        )
        for i, (folder, account) in enumerate(zip(folders, accounts, strict=True))
    ]
    model = ModelConfig(arch=settings.model, options=DEMO_OPTIONS.get(settings.model, {}))  # type: ignore[arg-type]
    training = TrainConfig(
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        lr=settings.lr,
        seed=settings.seed,
        min_batch_size=settings.min_batch_size,
    )
    store = FsspecStore(f"file://{(out / 'vault').resolve()}")
    genesis = genesis_weights(model, settings.seed)
    founders = [Founder(h.address, public_bytes(h.key), h.name) for h in hospitals]
    client, _ = found(chain, admin, store, settings.variant, genesis, founders)
    co = Coalition(
        client,
        store,
        settings.variant,
        model,
        training,
        AcceptancePolicy(settings.tolerance_global, settings.tolerance_local),
        load_segmentation(root / GLOBAL),
        hospitals,
        directory=ChainDirectory(client, ttl=60.0),
    )
    return co, genesis


def _trained(co: Coalition, start: dict[str, torch.Tensor], data: ImageData, steps: int, seed: int) -> nn.Module:
    """A model trained from `start` on `data` for about `steps` optimisation steps."""
    per_epoch = max(1, len(data) // co.training.batch_size)
    config = TrainConfig(
        epochs=max(1, round(steps / per_epoch)),
        batch_size=co.training.batch_size,
        lr=co.training.lr,
        seed=seed,
        min_batch_size=co.training.min_batch_size,
    )
    model = build_model(co.model)
    model.load_state_dict(start)
    model.load_state_dict(train_increment(model, data, config).weights)
    return model


def baselines(co: Coalition, genesis: dict[str, torch.Tensor], steps: int, seed: int) -> dict[str, nn.Module]:
    """Each honest hospital alone, and all honest hospitals' data pooled, with the coalition's training budget."""
    honest = [h for h in co.hospitals if not h.byzantine]
    pooled = ImageData(
        honest[0].train.task,
        torch.cat([h.train.images for h in honest]),
        torch.cat([h.train.targets for h in honest]),
        tuple(f"{h.name}/{n}" for h in honest for n in h.train.names),
    )
    models = {h.name: _trained(co, genesis, h.train, steps, seed) for h in honest}
    models["centralized"] = _trained(co, genesis, pooled, steps, seed)
    return models


def score_table(co: Coalition, models: dict[str, nn.Module]) -> dict[str, dict[str, float]]:
    """Each model's score on G and on every hospital's local test set L."""
    sets = {"G": co.global_test, **{h.name: h.local_test for h in co.hospitals}}
    return {name: {s: round(evaluate(m, data).score, 4) for s, data in sets.items()} for name, m in models.items()}


@dataclass(frozen=True)
class DemoResult:
    summary: dict[str, Any]  # exactly the keys of summary.json
    score_table: dict[str, dict[str, float]]  # model -> {"G": score, hospital: score on its L}
    seconds_by_phase: dict[str, float]
    audit: AuditReport
    history: LedgerHistory
    head: int
    client: LedgerClient
    supervisor_log: list[dict[str, Any]] = field(default_factory=list)  # variant C: every supervisor request


def _plain_table(
    co: Coalition, settings: DemoSettings, genesis: dict[str, torch.Tensor]
) -> dict[str, dict[str, float]]:
    """A and B: the head and the same-budget baselines (torch), on G and every L."""
    head_model = build_model(co.model)
    head_model.load_state_dict(
        load_model(co, co.hospitals[0], co.client.get_model(co.client.head(), with_uri=False).model_hash.hex())
    )
    trainers = settings.members if settings.mode == "fedavg" else 1  # who trains in one round
    steps = trainers * settings.rounds * settings.epochs * (len(co.hospitals[0].train) // settings.batch_size)
    return score_table(co, {"coalition": head_model, **baselines(co, genesis, steps, settings.seed)})


def run_demo(
    settings: DemoSettings,
    chain: Chain,
    out: Path,
    on_update: Callable[[list[CandidateRow]], None] | None = None,
    chain_label: str | None = None,
) -> DemoResult:
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    if settings.variant is Variant.C:
        from tclearn.simulation.encrypted_demo import setup_encrypted  # loads TenSEAL: only for variant C

        co, encrypted = setup_encrypted(settings, chain, out)
    else:
        co, genesis = setup(settings, chain, out)
    rows: list[CandidateRow] = []

    def show(row: CandidateRow) -> None:
        if not rows or rows[-1] is not row:
            rows.append(row)
        if on_update:
            on_update(rows)

    for r in range(settings.rounds):
        turn = co.hospitals[r % settings.members]
        if settings.mode == "fedavg":
            run_fedavg_round(co, turn, settings.aggregator, show)
        else:
            run_round(co, turn, show)
    head = co.client.head()
    if settings.variant is Variant.C:
        table = encrypted.score_table(co, settings.rounds * settings.he_steps)  # one trainer per round
    else:
        table = _plain_table(co, settings, genesis)
    single = {name: row["G"] for name, row in table.items() if name not in ("coalition", "centralized")}
    scores = {"coalition": table["coalition"]["G"], "centralized": table["centralized"]["G"], "single": single}
    history = rebuild(co.client.events())
    report = audit(history, co.store)
    committed = [r for r in rows if r.state == "committed"]
    summary = {
        "variant": settings.variant.name,
        "chain": chain_label or ("embedded" if chain.embedded else chain.kind),
        "mode": settings.mode,
        "metric": metric_name(co),
        "members": [h.name for h in co.hospitals],
        "validators": [h.name for h in co.hospitals],
        "byzantine": [h.name for h in co.hospitals if h.byzantine],
        "candidates": [r.to_json() for r in rows],
        "committed": len(committed),
        "rejected": sum(r.state == "rejected" for r in rows),
        "poisoned_submitted": sum(r.byzantine for r in rows),
        "poisoned_committed": sum(r.byzantine for r in committed),
        "honest_rejected": sum(not r.byzantine and r.state == "rejected" for r in rows),
        "scores": scores,
        "gas": {
            "submit": max((r.gas["submit"] for r in rows), default=0),
            "open": max((r.gas.get("open", 0) for r in rows), default=0),
            "vote": max((r.gas.get("votes", 0) // max(1, r.approvals + r.rejections) for r in rows), default=0),
            "per_committed_round": round(sum(sum(r.gas.values()) for r in committed) / len(committed))
            if committed
            else 0,
        },
        "audit_ok": report.ok,
        "seconds": round(time.perf_counter() - started, 1),
    }
    phases = {p: round(co.clock.seconds.get(p, 0.0), 3) for p in PHASES}
    supervisor_log = encrypted.log() if settings.variant is Variant.C else []
    return DemoResult(summary, table, phases, report, history, head, co.client, supervisor_log)
