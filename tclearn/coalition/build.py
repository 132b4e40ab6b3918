"""Building a coalition context: the one place where a variant becomes a model backend and a data format.

`data_format(variant)` says how a hospital's folder and G are read (images and masks; or, in variant C,
feature tables checked for the encrypted model). `build` connects the hospitals of this process to a founded
coalition: it reads the acceptance policy the chain declares (its record from the vault) and the variant from
the chain once, and gives the context exactly one backend — plain (A),
sealed for the active members' keys read from the chain (B), or CKKS under the public context the supervisor
registered on chain, re-hashed by the vault, with a supervisor client per hospital (C). The demo,
`coalition up`'s sites and the services all build their coalition here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tclearn.coalition.backend import ModelBackend, PlainBackend, SealedBackend, TensorBackend
from tclearn.coalition.context import Clock, Coalition, Hospital, marked
from tclearn.coalition.declared import check_expected, declared_policy
from tclearn.coalition.policy import AcceptancePolicy
from tclearn.coalition.watermark import read_key
from tclearn.errors import ConfigError, DataError, NotFoundError, TclearnError
from tclearn.learning.active import committee_chosen
from tclearn.learning.coding import declared
from tclearn.learning.data import ImageData, Task
from tclearn.learning.defaults import ENCRYPTED_TRAINING, EncryptedTraining
from tclearn.learning.folders import read_patients
from tclearn.learning.manifest import Manifest, fingerprint
from tclearn.learning.models import ModelConfig
from tclearn.learning.multilabel import LABELS_CSV, multilabel_samples
from tclearn.learning.samples import Samples
from tclearn.learning.synth import GLOBAL
from tclearn.learning.tables import read_table
from tclearn.learning.tabular import GLOBAL_CSV
from tclearn.learning.train import TrainConfig
from tclearn.learning.volumes import DEFAULT_CACHE_BYTES, FileSamples, Intensity, segmentation_samples
from tclearn.learning.watermark import MarkKey
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.directory import ChainDirectory
from tclearn.protocol import GENESIS
from tclearn.types import Member, Role, Variant, VoteMode
from tclearn.vault.store import BlobStore

if TYPE_CHECKING:  # TenSEAL is imported for variant C only
    from tclearn.he.client import SupervisorClient

ConnectSupervisor = Callable[[Hospital], "SupervisorClient"]


@dataclass(frozen=True)
class HospitalData:
    train: Samples
    local_test: Samples
    manifest: Manifest
    patients: tuple[str, ...] | None = None  # each training item's patient (`train/patients.csv`), if grouped


class DataFormat(Protocol):
    @property
    def global_name(self) -> str:
        """G's name in a coalition folder."""
        ...

    @property
    def shared(self) -> tuple[str, ...]:
        """What a coalition folder holds for everyone (G)."""
        ...

    @property
    def own(self) -> tuple[str, ...]:
        """What each hospital's folder holds."""
        ...

    def global_test(self, path: Path) -> Samples: ...

    def hospital(self, folder: Path, global_test: Samples) -> HospitalData: ...


@dataclass(frozen=True)
class Images:
    """Images (2-D pictures, 3-D volumes) with their targets: `G/images` and a hospital's `train/images` and
    `test/images`, each beside its `masks/` (segmentation) or its `labels.csv` (multi-label). Read from disk
    through a cache of `cache_bytes` per set; a hospital's own images through its `intensity`, G through the
    coalition's `global_intensity`."""

    task: Task = Task.SEGMENTATION
    intensity: Intensity = field(default_factory=Intensity)
    global_intensity: Intensity = field(default_factory=Intensity)
    cache_bytes: int = DEFAULT_CACHE_BYTES
    global_name: str = GLOBAL

    def __post_init__(self) -> None:
        if self.task not in READERS:
            raise ConfigError(f"a coalition's image task is one of {', '.join(READERS)}; got {self.task}")

    @property
    def _targets(self) -> str:
        return "masks" if self.task is Task.SEGMENTATION else LABELS_CSV

    @property
    def shared(self) -> tuple[str, ...]:
        return (f"{GLOBAL}/images", f"{GLOBAL}/{self._targets}")

    @property
    def own(self) -> tuple[str, ...]:
        return tuple(f"{split}/{part}" for split in ("train", "test") for part in ("images", self._targets))

    def global_test(self, path: Path) -> Samples:
        return READERS[self.task](path, self.global_intensity, self.cache_bytes)

    def hospital(self, folder: Path, global_test: Samples) -> HospitalData:
        read = READERS[self.task]
        train, test = (read(folder / part, self.intensity, self.cache_bytes) for part in ("train", "test"))
        sets = {"G": global_test, "train": train, "test": test}
        dims = {name: {len(i.shape) - 1 for i in s.items} for name, s in sets.items() if isinstance(s, FileSamples)}
        if len(set().union(*dims.values())) > 1:
            raise DataError(
                f"{folder} and G mix 2-D and 3-D images: " + ", ".join(f"{k} {sorted(v)}" for k, v in dims.items())
            )
        if self.task is Task.MULTILABEL and not train.classes == test.classes == global_test.classes:
            raise DataError(
                f"{folder}'s labels ({', '.join(train.classes)}) are not G's ({', '.join(global_test.classes)})"
            )
        patients = read_patients(folder / "train", train.names)  # the patient privacy unit, where it is grouped
        return HospitalData(train, test, training_manifest(folder / "train"), patients)


def training_manifest(train: Path) -> Manifest:
    """The manifest of an image training folder with what an increment declares about it: how many of its
    images the committee chose (`train/committee.json`) and their JPEG 2000 coding."""
    return replace(fingerprint(train), committee_chosen=committee_chosen(train), compression=declared(train))


READERS: dict[Task, Callable[[Path, Intensity, int], FileSamples]] = {
    Task.SEGMENTATION: segmentation_samples,
    Task.MULTILABEL: multilabel_samples,
}


@dataclass(frozen=True)
class Tables:
    """Binary feature tables (variant C): G one CSV file, a hospital's `train.csv` and `test.csv`, with G's
    feature columns (`tclearn.learning.tables.read_table`: raw values, any scale; the coalition's scaling is
    agreed at founding and travels in the model)."""

    label_column: str = "label"
    global_name: str = GLOBAL_CSV
    shared: tuple[str, ...] = (GLOBAL_CSV,)
    own: tuple[str, ...] = ("train.csv", "test.csv")

    def global_test(self, path: Path) -> Samples:
        return read_table(path, self.label_column).samples()

    def hospital(self, folder: Path, global_test: Samples) -> HospitalData:
        columns = table_columns(global_test)  # every table has G's columns
        train, test = (read_table(folder / name, self.label_column, columns).samples() for name in self.own)
        return HospitalData(train, test, fingerprint(folder / "train.csv"))


def table_columns(data: Samples) -> tuple[str, ...]:
    """A table's feature columns (`Tables` reads them with the table)."""
    if not isinstance(data, ImageData) or not data.columns:
        raise DataError("expected a feature table read from a CSV file (its columns named)")
    return data.columns


def data_format(
    variant: Variant,
    label_column: str = "label",
    intensity: Intensity | None = None,
    global_intensity: Intensity | None = None,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    task: Task = Task.SEGMENTATION,
) -> DataFormat:
    """How a coalition folder is read: feature tables in variant C, images (with their intensity) otherwise."""
    if variant is Variant.C:
        return Tables(label_column)
    own = intensity or Intensity()
    return Images(Task(task), own, global_intensity or own, cache_bytes)


def hospital_folders(root: Path, members: int, form: DataFormat) -> list[Path]:
    """The first `members` hospital folders of a coalition folder, checked for the data format's layout."""
    if not root.is_dir():
        raise NotFoundError(f"data folder {root} does not exist")
    required = [root / part for part in form.shared]
    folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name != GLOBAL and not p.name.startswith("."))
    if len(folders) < members:
        raise ConfigError(f"{root} holds {len(folders)} hospital folder(s); {members} are needed")
    for folder in folders[:members]:
        required += [folder / part for part in form.own]
    missing = [str(p) for p in required if not p.exists()]
    if missing:
        raise NotFoundError(f"{root} is not in the coalition layout; missing: {', '.join(missing)}")
    return folders[:members]


def find_supervisor(client: LedgerClient) -> Member:
    """The coalition's one active supervisor, read from the contract (its key there: the public context hash)."""
    found = [m for m in client.members() if m.active and Role.SUPERVISOR in m.roles]
    if len(found) != 1:
        raise ConfigError(f"a variant C coalition needs exactly one active supervisor on chain; it has {len(found)}")
    return found[0]


def _ckks(
    client: LedgerClient,
    store: BlobStore,
    global_test: Samples,
    hospitals: Sequence[Hospital],
    connect: ConnectSupervisor | None,
    encrypted: EncryptedTraining,
    clock: Clock,
) -> ModelBackend[Any]:
    from tclearn.coalition.ckks import CkksBackend, genesis_spec  # TenSEAL only for variant C
    from tclearn.he.keys import fetch_context

    if connect is None:
        raise ConfigError("a variant C coalition needs a way to its supervisor (supervisor_url)")
    context = fetch_context(store, find_supervisor(client).encryption_key.hex())  # named on chain, re-hashed
    spec = genesis_spec(store, context, client.get_model(GENESIS, with_uri=False).model_hash.hex())
    columns = table_columns(global_test)
    expected = spec.scaling.columns if spec.scaling is not None else columns[: spec.features]
    if len(columns) != spec.features or columns != expected:
        raise DataError(
            f"G's feature columns ({', '.join(columns)}) are not those of the coalition's model "
            f"({', '.join(expected) if spec.scaling is not None else f'{spec.features} columns'})"
        )
    clients = {h.address: connect(h) for h in hospitals}
    return CkksBackend(store, spec, context, clients, encrypted.steps, encrypted.lr, clock)


def build(
    client: LedgerClient,
    store: BlobStore,
    hospitals: list[Hospital],
    global_test: Samples,
    *,
    model: ModelConfig,
    training: TrainConfig,
    expected_policy: Mapping[str, Any] | None = None,
    supervisor: ConnectSupervisor | None = None,
    encrypted: EncryptedTraining = ENCRYPTED_TRAINING,
    directory_ttl: float = 30.0,
    votes: VoteMode = VoteMode.SIGNED,
) -> Coalition:
    """The coalition as `hospitals` (those this process acts for) see it, with the backend of its variant and the
    acceptance policy the chain declares (`ConfigError` if it is not the `expected_policy` settings this site pins)."""
    policy, policy_hash = declared_policy(client, store)
    check_expected(policy, policy_hash, expected_policy or {})
    directory, clock = ChainDirectory(client, ttl=directory_ttl), Clock()
    variant = client.variant()
    backend: ModelBackend[Any]
    mark = watermark_key(store, policy, variant, hospitals)
    training = marked(training, policy, mark)
    if variant is Variant.C:
        backend = _ckks(client, store, global_test, hospitals, supervisor, encrypted, clock)
    elif variant is Variant.B:
        keys = {h.address: h.key for h in hospitals}
        backend = SealedBackend(store, model, training, clock, recipients=directory.encryption_keys, keys=keys)
    else:
        backend = PlainBackend(store, model, training, clock)
    return Coalition(client, store, backend, policy, global_test, hospitals, directory, votes=votes, watermark=mark)


def watermark_key(
    store: BlobStore, policy: AcceptancePolicy, variant: Variant, hospitals: Sequence[Hospital]
) -> MarkKey | None:
    """The coalition's watermark key as the policy commits to it, read by each of `hospitals` (unsealed with its own
    key in variant B); None without a watermark. An error naming the hospital where one cannot open it or it is not
    the key committed to (the error of the read, named)."""
    if policy.watermark is None:
        return None
    if variant is Variant.C:
        raise ConfigError(
            "the coalition's policy names a watermark, which variant C cannot carry (docs/traceability.md)"
        )
    readers = [(h.name, h.address, h.key if variant is Variant.B else None) for h in hospitals] or [("", "", None)]
    key = None
    for name, address, private in readers:  # every hospital of this process must open it: each trains with it
        try:
            key = read_key(store, policy.watermark, address, private)
        except TclearnError as exc:
            who = name or "this site"
            raise type(exc)(f"{who} cannot open the coalition's watermark key: {exc}", **exc.details) from None
    return key


def follow_policy(co: Coalition, policy: AcceptancePolicy) -> None:
    """Applies a newly declared `policy` to `co` in place; a changed watermark is read again (and checked against
    its commitment) and trained from then on."""
    if policy.watermark != co.policy.watermark:
        key = watermark_key(co.store, policy, co.backend.variant, co.hospitals)
        if isinstance(co.backend, TensorBackend):
            co.backend.training = marked(co.backend.training, policy, key)
        co.watermark = key
    co.policy = policy
