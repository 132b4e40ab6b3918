"""The embedded coalition demo: hospitals with domain-shifted data train one model together on a chain.

Sets up a coalition (data, keys, genesis model, contract, members), runs incremental rounds through the
real duties, trains the seed-001-style baselines with the same budget (each hospital alone; all data
pooled), audits every blob against the chain, and summarises it all. Variant C (an encrypted logistic
regression on feature tables, a supervisor holding the key) is founded and judged by `encrypted_demo`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account.signers.local import LocalAccount

from tclearn.audit.evidence import Evidence, all_evidence
from tclearn.audit.verify import AuditReport, audit
from tclearn.coalition.build import (
    ConnectSupervisor,
    DataFormat,
    HospitalData,
    Tables,
    build,
    data_format,
    hospital_folders,
    table_columns,
)
from tclearn.coalition.context import PHASES, Coalition, Hospital
from tclearn.coalition.fedavg import Aggregator
from tclearn.coalition.founding import Founder
from tclearn.coalition.policy import AcceptancePolicy, PrivacyPolicy
from tclearn.coalition.rounds import CandidateRow, run_fedavg_round, run_round
from tclearn.coalition.validator import metric_name
from tclearn.errors import ConfigError
from tclearn.learning.choices import DEFAULT_AGGREGATOR, Attack
from tclearn.learning.data import Task
from tclearn.learning.defaults import (
    COALITION_TRAINING,
    DEMO_ROUNDS,
    DEMO_TRAIN,
    DP_TRAINING,
    ENCRYPTED_TRAINING,
    SIMULATION_LOSS,
    EncryptedTraining,
)
from tclearn.learning.models import ModelConfig
from tclearn.learning.multilabel_synth import synth_multilabel
from tclearn.learning.poison import check_task
from tclearn.learning.privacy import Accountant, PrivacyUnit, calibrated
from tclearn.learning.samples import Samples, first_pair
from tclearn.learning.synth import DEFAULT_SIZE, GLOBAL, synth_coalition
from tclearn.learning.tabular import synth_tabular
from tclearn.learning.train import LossName, Optimiser, TrainConfig
from tclearn.learning.volumes import site_intensities
from tclearn.ledger.chain import Chain
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.history import LedgerHistory, rebuild
from tclearn.records import RunSummary, SummaryGas, SummaryScores
from tclearn.simulation.baselines import TensorReference
from tclearn.simulation.collusion import little_is_enough_round
from tclearn.simulation.run import RunSpec, by_attack, outcome
from tclearn.types import Variant
from tclearn.vault.envelope import public_bytes
from tclearn.vault.store import BlobStore, FsspecStore

MODES = ("incremental", "fedavg")
# The demo's network per task, and its size per (network, spatial dims) where the zoo's default does not fit.
DEMO_MODELS = {Task.SEGMENTATION: "unet", Task.MULTILABEL: "densenet121"}
# The demo's UNet is wider than the zoo's CPU default (8-16-32): a round's ledger, vault and crypto work is a
# fixed ~0.1 s, and with this model training and validation take most of a round (bench/coalition.py).
DEMO_OPTIONS: dict[tuple[str, int], dict[str, Any]] = {
    ("unet", 2): {"channels": [16, 32, 64], "strides": [2, 2]},
    ("unet", 3): {"channels": [8, 16, 32], "strides": [2, 2]},  # 3-D on 2 CPU cores: the zoo's small default
}
# Epochs per increment, below the coalition default (COALITION_TRAINING): each hospital sees one part of the case
# mix, and a long increment on it forgets the others' (G drops and validators reject honest work); many short
# increments (DEMO_ROUNDS) reach the pooled model (docs/coalition.md).
DEMO_EPOCHS = 8
SIMULATION_LOSS_NAME = LossName(SIMULATION_LOSS)


class Reference(Protocol):
    """How a simulation founds its coalition, reaches its supervisor (if any) and judges the result."""

    def found(
        self,
        chain: Chain,
        admin: LocalAccount,
        store: BlobStore,
        founders: Sequence[Founder],
        policy: AcceptancePolicy,
    ) -> LedgerClient: ...

    def connect(self) -> ConnectSupervisor | None: ...

    def score_table(self, co: Coalition, rounds: int, trainers: int) -> dict[str, dict[str, float]]: ...

    def log(self) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class DemoSettings(RunSpec):
    """The demo's run: in one process, on an embedded chain or a local node."""

    rounds: int = DEMO_ROUNDS
    mode: str = "incremental"
    aggregator: Aggregator = DEFAULT_AGGREGATOR  # fedavg mode: how the round's aggregator combines contributions
    model: str | None = None  # None: the task's default (DEMO_MODELS)
    task: Task = Task.SEGMENTATION  # or multilabel (seed 003's ten regions)
    dims: int = 2  # synthetic data: 2-D pictures or 3-D volumes
    epochs: int = DEMO_EPOCHS
    batch_size: int = COALITION_TRAINING.batch_size
    lr: float = COALITION_TRAINING.lr
    loss: LossName = SIMULATION_LOSS_NAME
    min_batch_size: int = COALITION_TRAINING.min_batch_size
    tolerance_global: float = AcceptancePolicy.tolerance_global
    tolerance_local: float = AcceptancePolicy.tolerance_local
    data: Path | None = None
    label_column: str = "label"  # variant C: the label column of the CSV files
    features: int = 30  # variant C, synthetic data: measurements per patient (at 8 no hospital lacks much alone)
    he_steps: int = ENCRYPTED_TRAINING.steps  # variant C: full-batch encrypted gradient steps per increment
    he_lr: float = ENCRYPTED_TRAINING.lr  # variant C: their learning rate
    acceptance: AcceptancePolicy | None = None  # the policy to found with (`--policy`); None: the defaults
    baselines: bool = True  # False: the head is scored alone, no hospital-alone or pooled model is trained
    # A DP coalition: every hospital's epsilon cap over all its increments (DP required by the policy); each increment
    # spends its share, the cap over the increments a hospital proposes (`rounds` over `members`, rounded up)
    dp_epsilon: float | None = None
    cases: int = DEMO_TRAIN  # synthetic data: labelled training cases per hospital
    watermark: bool = False  # found the coalition with a watermark every candidate must carry (variants A and B)

    def model_config(self, data: Samples) -> ModelConfig:
        """The network for the task, shaped by the data (channels, spatial dims, labels); in variant C, whose model
        is the supervisor's encrypted regression, the 2-D default (named in the coalition, never trained)."""
        arch = self.model or DEMO_MODELS[self.task]
        if self.variant is Variant.C:
            return ModelConfig(arch, options=DEMO_OPTIONS.get((arch, 2), {}))  # type: ignore[arg-type]
        x = first_pair(data)[0]
        spatial_dims = x.dim() - 2
        options = DEMO_OPTIONS.get((arch, spatial_dims), {})
        if self.task is Task.MULTILABEL:
            return ModelConfig(arch, spatial_dims, int(x.shape[1]), len(data.classes), options, multilabel=True)  # type: ignore[arg-type]
        return ModelConfig(arch, spatial_dims, int(x.shape[1]), options=options)  # type: ignore[arg-type]

    def training(self, units: int) -> TrainConfig:
        """How every hospital trains; in a DP coalition with DP-SGD calibrated for the smallest hospital's `units`
        training cases (a larger one spends less at the same noise), at the optimiser DP-SGD needs (DP_TRAINING)."""
        plain = TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            loss=None if self.task is Task.MULTILABEL else self.loss,
            seed=self.seed,
            min_batch_size=self.min_batch_size,
        )
        if self.dp_epsilon is None:
            return plain
        rules = self.privacy()
        assert rules is not None
        dp = calibrated(
            self.epsilon_per_increment,
            None,
            max_grad_norm=DP_TRAINING.max_grad_norm,
            delta=rules.delta,
            accountant=Accountant(rules.accountant),
            unit=PrivacyUnit.SAMPLE,
            batch_size=self.batch_size,
            epochs=self.epochs,
            units=units,
        )
        return dataclasses.replace(plain, optimiser=Optimiser(DP_TRAINING.optimiser), lr=DP_TRAINING.lr, dp=dp)

    @property
    def epsilon_per_increment(self) -> float:
        """What each increment may spend: the cap shared by the increments each hospital proposes."""
        assert self.dp_epsilon is not None
        return self.dp_epsilon / math.ceil(self.rounds / self.members)

    def privacy(self) -> PrivacyPolicy | None:
        """The privacy policy of a DP coalition: DP required, each hospital's cap `dp_epsilon`."""
        if self.dp_epsilon is None:
            return None
        if self.acceptance is not None and self.acceptance.privacy is not None:
            return dataclasses.replace(self.acceptance.privacy, epsilon_cap=self.dp_epsilon)
        return PrivacyPolicy(required=True, epsilon_cap=self.dp_epsilon)

    def policy(self) -> AcceptancePolicy:
        """The acceptance policy the demo founds its coalition with: `acceptance` (a policy file) if given, else
        the defaults with the demo's tolerances; the aggregator and the smallest batch are the run's."""
        if self.acceptance is not None:
            return dataclasses.replace(
                self.acceptance, aggregator=self.aggregator.value, privacy=self.privacy() or self.acceptance.privacy
            )
        return AcceptancePolicy(
            self.tolerance_global,
            self.tolerance_local,
            self.min_batch_size,
            aggregator=self.aggregator.value,
            privacy=self.privacy(),
            max_update=AcceptancePolicy.max_update if self.dp_epsilon is None else DP_TRAINING.max_update,
        )

    @property
    def accounts(self) -> int:
        """Funded keys the run needs: the admin, the members, and in variant C the supervisor."""
        return self.members + 1 + (self.variant is Variant.C)

    def run_mode(self) -> str:
        return self.mode

    def __post_init__(self) -> None:
        super().__post_init__()
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
        if self.watermark and self.variant is Variant.C:
            raise ConfigError("--watermark is for variants A and B: variant C's weights are encrypted")
        if self.mode not in MODES:
            raise ConfigError(f"mode {self.mode!r} is not implemented yet; available: {', '.join(MODES)}")
        try:
            object.__setattr__(self, "task", Task(self.task))
        except ValueError:
            raise ConfigError(f"--task must be segmentation or multilabel, got {self.task!r}") from None
        if self.task not in DEMO_MODELS:
            raise ConfigError(f"--task must be segmentation or multilabel, got {self.task.value!r}")
        if self.dims not in (2, 3):
            raise ConfigError(f"--dims must be 2 or 3, got {self.dims}")
        if self.variant is Variant.C and (self.task is not Task.SEGMENTATION or self.dims != 2):
            raise ConfigError("variant C trains an encrypted model on feature tables: --task and --dims do not apply")
        if self.acceptance is not None and self.acceptance.min_batch_size > self.batch_size:
            raise ConfigError(
                f"the policy's min_batch_size {self.acceptance.min_batch_size} is above the demo's batch size "
                f"{self.batch_size}: the general would refuse every candidate"
            )
        if self.byzantine and self.variant is not Variant.C:
            for attack in self.attacks:
                check_task(attack, self.task)
        if self.cases < self.batch_size:
            raise ConfigError(f"--cases {self.cases} cannot fill one batch of {self.batch_size}")
        if self.dp_epsilon is not None:
            if not (math.isfinite(self.dp_epsilon) and self.dp_epsilon > 0):
                raise ConfigError(f"--dp-epsilon must be a positive number, got {self.dp_epsilon}")
            if self.variant is Variant.C or self.mode != "incremental":
                raise ConfigError(
                    "--dp-epsilon trains DP-SGD increments: variant A or B, incremental mode (variant C trains "
                    "encrypted full-batch steps; a FedAvg aggregate's privacy is its contributions')"
                )


def chosen_aggregator(given: Aggregator | None, acceptance: AcceptancePolicy | None) -> Aggregator:
    """The FedAvg rule of a run: the one given, else the policy's; both, and different, is a `ConfigError`."""
    declared = Aggregator(acceptance.aggregator) if acceptance is not None else DEFAULT_AGGREGATOR
    if given is not None and acceptance is not None and given is not declared:
        raise ConfigError(
            f"--aggregator {given.value} contradicts the policy file's aggregator {declared.value}: give one of them"
        )
    return given or declared


def check_keys(settings: DemoSettings, chain: Chain) -> None:
    if len(chain.dev_keys) < settings.accounts:
        raise ConfigError(f"the chain funds {len(chain.dev_keys)} keys; {settings.accounts} are needed")


def synthesize(settings: DemoSettings, root: Path) -> None:
    """The default data: hospitals that each see one part of the case mix (2-D pictures or 3-D volumes), the
    ten-region CT task (multilabel), or (variant C) feature tables."""
    if settings.variant is Variant.C:
        synth_tabular(root, hospitals=settings.members, features=settings.features, seed=settings.seed)
    elif settings.task is Task.MULTILABEL:
        synth_multilabel(root, hospitals=settings.members, dims=settings.dims, seed=settings.seed)
    else:
        side = DEFAULT_SIZE[settings.dims]
        synth_coalition(root, settings.members, settings.cases, size=side, seed=settings.seed, dims=settings.dims)


def reference_for(
    settings: DemoSettings,
    chain: Chain,
    global_test: Samples,
    folders: Sequence[Path],
    data: Sequence[HospitalData],
    out: Path,
) -> Reference:
    """How this run founds its coalition and what it compares the result with: chosen once, by variant."""
    if settings.variant is Variant.C:
        from tclearn.coalition.ckks import SiteRows  # TenSEAL only for variant C
        from tclearn.he.duties import features
        from tclearn.simulation.encrypted_demo import EncryptedRun

        names = tuple(str(folder / Tables().own[0]) for folder in folders)
        rows = tuple(features(d.train)[0] for d in data)
        sites = SiteRows(table_columns(global_test), rows, names=names)
        return EncryptedRun(global_test, sites, chain.dev_keys[settings.members + 1], out / "supervisor", settings.seed)
    return TensorReference(
        settings.variant, settings.model_config(global_test), settings.seed, settings.baselines, settings.watermark
    )


def setup(settings: DemoSettings, chain: Chain, out: Path) -> tuple[Coalition, Reference]:
    """Data (every hospital's checked before anything is written), keys, genesis, contract, members: the
    coalition as every hospital of the run sees it, and the reference it is compared with."""
    root = settings.data
    if root is None:
        root = out / "data"
        synthesize(settings, root)
    sites = site_intensities(root)
    shared = sites.get(GLOBAL) or next(iter(sites.values()), None)  # G: its own record, else the first site's

    def form_for(site: str | None = None) -> DataFormat:
        own = sites.get(site, shared) if site else shared
        return data_format(settings.variant, settings.label_column, own, shared, task=settings.task)

    folders = hospital_folders(root, settings.members, form_for())
    check_keys(settings, chain)
    global_test = form_for().global_test(root / form_for().global_name)
    data = [form_for(folder.name).hospital(folder, global_test) for folder in folders]
    admin, accounts = chain.dev_keys[0], chain.dev_keys[1 : settings.members + 1]
    hospitals = [  # a Byzantine hospital tunes its attack on G, which every member holds
        Hospital(
            f.name,
            a,
            X25519PrivateKey.generate(),
            d.train,
            d.local_test,
            d.manifest,
            attack,
            probe=global_test if attack is not Attack.NONE else None,
            patients=d.patients,
        )
        for f, a, d, attack in zip(
            folders, accounts, data, map(settings.attack_at, range(settings.members)), strict=True
        )
    ]
    store = FsspecStore(f"file://{(out / 'vault').resolve()}")
    reference = reference_for(settings, chain, global_test, folders, data, out)
    founders = [Founder(h.address, public_bytes(h.key), h.name) for h in hospitals]
    client = reference.found(chain, admin, store, founders, settings.policy())
    training = settings.training(min(len(h.train) for h in hospitals))
    co = build(
        client,
        store,
        hospitals,
        global_test,
        model=settings.model_config(global_test),
        training=training,
        supervisor=reference.connect(),
        encrypted=EncryptedTraining(settings.he_steps, settings.he_lr),
        directory_ttl=60.0,
    )
    return co, reference


@dataclass(frozen=True)
class DemoResult:
    summary: dict[str, Any]  # exactly the keys of summary.json
    score_table: dict[str, dict[str, float]]  # model -> {"G": score, hospital: score on its L}
    seconds_by_phase: dict[str, float]
    audit: AuditReport
    history: LedgerHistory
    head: int
    client: LedgerClient
    coalition: Coalition  # as the run's hospitals saw it (benches measure its head further)
    supervisor_log: list[dict[str, Any]] = field(default_factory=list)  # variant C: every supervisor request
    evidence: dict[int, Evidence] = field(default_factory=dict)  # model id -> validator -> its vote's evidence


def run_demo(
    settings: DemoSettings,
    chain: Chain,
    out: Path,
    on_update: Callable[[list[CandidateRow]], None] | None = None,
    chain_label: str | None = None,
) -> DemoResult:
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    co, reference = setup(settings, chain, out)
    rows: list[CandidateRow] = []

    def show(row: CandidateRow) -> None:
        if not rows or rows[-1] is not row:
            rows.append(row)
        if on_update:
            on_update(rows)

    for r in range(settings.rounds):
        turn, began = co.hospitals[r % settings.members], time.perf_counter()
        if settings.mode == "fedavg":
            row = run_fedavg_round(co, turn, on_update=show, collude=little_is_enough_round)  # the policy's rule
        else:
            row = run_round(co, turn, show)
        row.round, row.seconds = r + 1, round(time.perf_counter() - began, 1)
    head = co.client.head()
    trainers = settings.members if settings.mode == "fedavg" else 1  # who trains in one round
    table = reference.score_table(co, settings.rounds, trainers)
    single = {name: row["G"] for name, row in table.items() if name not in ("coalition", "centralized")}
    history = rebuild(co.client.events())
    report = audit(history, co.store)
    committed = [r for r in rows if r.state == "committed"]
    summary = RunSummary(
        variant=settings.variant.name,
        chain=chain_label or ("embedded" if chain.embedded else chain.kind),
        mode=settings.mode,
        metric=metric_name(co),
        members=tuple(h.name for h in co.hospitals),
        validators=tuple(h.name for h in co.hospitals),
        byzantine=tuple(h.name for h in co.hospitals if h.byzantine),
        candidates=tuple(r.to_json() for r in rows),
        **outcome(rows),
        attacks=by_attack(rows),
        scores=SummaryScores(table["coalition"]["G"], table.get("centralized", {}).get("G"), single),
        gas=SummaryGas(
            submit=max((r.gas["submit"] for r in rows), default=0),
            open=max((r.gas.get("open", 0) for r in rows), default=0),
            vote=max((r.gas.get("votes", 0) // max(1, r.approvals + r.rejections) for r in rows), default=0),
            per_committed_round=round(sum(sum(r.gas.values()) for r in committed) / len(committed)) if committed else 0,
        ),
        audit_ok=report.ok,
        seconds=round(time.perf_counter() - started, 1),
    )
    phases = {p: round(co.clock.seconds.get(p, 0.0), 3) for p in PHASES}
    assert isinstance(co.client, LedgerClient)  # founded on a chain by the reference
    evidence = all_evidence(co.store, history)
    return DemoResult(summary.to_json(), table, phases, report, history, head, co.client, co, reference.log(), evidence)
