"""A hospital's coalition opened from its site config: the context the member API and the node daemon both
work with (`open_site`), so they see the same hospital the same way.

The variant is read from the chain; `tclearn.coalition.build` turns it into the data format (images, or
feature tables in variant C) and the model backend. Errors name the file's field that is wrong.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tclearn.coalition.build import DataFormat, build, data_format
from tclearn.coalition.context import Coalition, Hospital
from tclearn.coalition.policy import AcceptancePolicy, PrivacyPolicy
from tclearn.errors import ConfigError, DataError
from tclearn.learning.choices import Attack
from tclearn.learning.defaults import EncryptedTraining
from tclearn.learning.dpsgd import unit_groups
from tclearn.learning.models import ModelConfig
from tclearn.learning.privacy import Accountant, PrivacyUnit, calibrated, check_delta
from tclearn.learning.train import TrainConfig
from tclearn.learning.volumes import Intensity
from tclearn.ledger.accounts import choose_signer
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.deployment import open_deployment
from tclearn.site.config import SiteConfig
from tclearn.types import Variant
from tclearn.vault.allocator import keep_blob_buffers
from tclearn.vault.audience import CoalitionId
from tclearn.vault.http import HttpStore
from tclearn.vault.keys import key_password, load_key


class Closable(Protocol):
    def close(self) -> None: ...


@dataclass
class Site:
    """A hospital's view of its coalition: the context every duty takes, and its own place in it."""

    config: SiteConfig
    coalition: Coalition
    hospital: Hospital
    opened: list[Closable] = field(default_factory=list)  # the connections `open_site` made, closed by `close`
    form: DataFormat | None = None  # how the hospital's folder is read (`reread`); None: not from a folder

    def reread(self) -> bool:
        """Reads the hospital's data folder again, and takes it if its training files changed since it was read
        (images annotated and added by `tclearn active add`, files a data manager put there): the next increment
        trains on them and its metadata declares them. True when the data changed. A folder that no longer reads
        raises its `DataError` and the site keeps the data it had."""
        if self.form is None:
            return False
        data = self.form.hospital(self.config.data, self.coalition.global_test)
        if data.manifest == self.hospital.manifest:
            return False
        hospital = self.hospital
        hospital.train, hospital.local_test, hospital.manifest = data.train, data.local_test, data.manifest
        hospital.patients = data.patients
        return True

    @property
    def client(self) -> LedgerClient:
        """The site's chain client (a site always runs on a real chain: its node follows the chain's logs)."""
        client = self.coalition.client
        assert isinstance(client, LedgerClient)
        return client

    def close(self) -> None:
        for connection in self.opened:
            connection.close()


def _x25519(config: SiteConfig, variant: Variant) -> X25519PrivateKey:
    if config.encryption_key is not None:
        return load_key(config.encryption_key, key_password())
    if variant is Variant.B:
        raise ConfigError(f"site {config.name!r}: variant B needs encryption_key (an X25519 key file)")
    return X25519PrivateKey.generate()  # variants A and C: models are not sealed for members; this key opens nothing


def _check_paths(config: SiteConfig, variant: Variant) -> None:
    """Variant C's tables where the config says; errors name the field."""
    if variant is not Variant.C:
        return
    if not config.global_test.is_file():
        raise ConfigError(f"site {config.name!r}: global_test must be G's CSV file in variant C; {config.global_test}")
    missing = [name for name in ("train.csv", "test.csv") if not (config.data / name).is_file()]
    if missing:
        raise ConfigError(
            f"site {config.name!r}: data must be a folder holding train.csv and test.csv in variant C; "
            f"{config.data} lacks {', '.join(missing)}"
        )


def _check_training(config: SiteConfig, policy: AcceptancePolicy) -> None:
    """This site's training keeps to the batch size the coalition's policy requires, or its candidates are refused."""
    if config.training.min_batch_size < policy.min_batch_size:
        raise ConfigError(
            f"site {config.name!r}: training.min_batch_size {config.training.min_batch_size} is below the coalition's "
            f"min_batch_size {policy.min_batch_size} (its acceptance policy on chain); every candidate trained with "
            f"smaller batches would be refused: set [training] min_batch_size = {policy.min_batch_size}"
        )


def _private(coalition: Coalition, config: SiteConfig, hospital: Hospital, training: TrainConfig) -> Coalition:
    """The coalition as this site trains in it: with DP-SGD where `[training.privacy]` says so, at the coalition's
    delta and accountant; a `ConfigError` where the coalition requires DP and the site does not train with it."""
    chosen, rules = config.training.privacy, coalition.policy.privacy
    if chosen is None:
        if rules is not None and rules.required:
            raise ConfigError(
                f"site {config.name!r}: the coalition requires differential privacy (its policy on chain) and this "
                "site trains without it: set [training.privacy] epsilon = E (what each increment may spend) or "
                "noise_multiplier = S"
            )
        return coalition
    if coalition.backend.variant is Variant.C:
        raise ConfigError(
            f"site {config.name!r}: variant C trains encrypted full-batch steps, not DP-SGD; remove [training.privacy]"
        )
    unit = PrivacyUnit(chosen.unit)
    if unit is PrivacyUnit.PATIENT and hospital.patients is None:
        raise ConfigError(
            f'site {config.name!r}: [training.privacy] unit = "patient" needs {config.data}/train/patients.csv '
            "(columns image,patient) grouping the training images by patient"
        )
    units = len(unit_groups(hospital.train, unit, hospital.patients))
    counted = rules or PrivacyPolicy()  # delta and accountant: the coalition's, or the defaults without DP rules
    try:
        check_delta(counted.delta, units)
        dp = calibrated(
            chosen.epsilon,
            chosen.noise_multiplier,
            max_grad_norm=chosen.max_grad_norm,
            delta=counted.delta,
            accountant=Accountant(counted.accountant),
            unit=unit,
            batch_size=config.training.batch_size,
            epochs=config.training.epochs,
            units=units,
        )
    except (ConfigError, DataError) as exc:
        raise ConfigError(f"site {config.name!r}: [training.privacy]: {exc}") from None
    return coalition.trained_with(dataclasses.replace(training, dp=dp))


def open_site(config: SiteConfig) -> Site:
    """Connects to the coalition as this hospital and loads its data; errors name the file or field."""
    keep_blob_buffers()  # a site streams models to and from the vault all its life
    _, client = open_deployment(config.deployment, config.chain_url, nonce_locks=config.nonce_locks)
    variant = client.variant()
    if variant is Variant.C and config.supervisor_url is None:
        raise ConfigError(f"site {config.name!r}: variant C needs supervisor_url (the supervisor service)")
    if variant is not Variant.C and config.supervisor_url is not None:
        raise ConfigError(f"site {config.name!r}: supervisor_url is for variant C; this coalition is {variant.name}")
    _check_paths(config, variant)
    own = Intensity(**config.intensity.model_dump())
    shared = Intensity(**config.global_intensity.model_dump()) if config.global_intensity else own
    model = ModelConfig(arch=config.model.arch, **config.model.model_dump(exclude={"arch"}))  # type: ignore[arg-type]
    form = data_format(variant, config.label_column, own, shared, config.cache_mib * 2**20, model.task)
    global_test = form.global_test(config.global_test)
    data = form.hospital(config.data, global_test)
    account = choose_signer(client.chain.chain_id, client.chain.embedded, config.keystore, config.dev_account)
    probe = global_test if config.attack is not Attack.NONE else None  # a simulated attacker tunes itself on G
    hospital = Hospital(
        config.name,
        account,
        _x25519(config, variant),
        data.train,
        data.local_test,
        data.manifest,
        config.attack,
        probe,
        data.patients,
    )
    training = TrainConfig(**config.training.model_dump(exclude={"privacy"}))
    coalition_id = CoalitionId.of_client(client)
    store = HttpStore(config.vault_url, account.key, coalition=coalition_id)
    opened: list[Closable] = [store]
    supervisor_url = config.supervisor_url

    def supervisor(h: Hospital) -> Any:
        from tclearn.he.client import HttpSupervisorClient  # TenSEAL only for variant C

        assert supervisor_url is not None
        opened.append(HttpSupervisorClient(supervisor_url, h.account.key, coalition=coalition_id))
        return opened[-1]

    try:
        coalition = build(
            client,
            store,
            [hospital],
            global_test,
            model=model,
            training=training,
            expected_policy=config.policy.expected(),
            supervisor=supervisor,
            encrypted=EncryptedTraining(config.he.steps, config.he.lr),
            votes=config.votes,
        )
        _check_training(config, coalition.policy)
        coalition = _private(coalition, config, hospital, training)
    except BaseException:
        for connection in opened:
            connection.close()
        raise
    return Site(config, coalition, hospital, opened, form)
