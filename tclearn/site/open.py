"""A hospital's coalition opened from its site config: the context the member API and the node daemon both
work with (`open_site`), so they see the same hospital the same way."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tclearn.coalition.context import Coalition, Hospital
from tclearn.coalition.encrypted_setup import encrypted_coalition, find_supervisor, load_table, model_spec
from tclearn.coalition.policy import AcceptancePolicy
from tclearn.errors import ConfigError
from tclearn.he.client import HttpSupervisorClient
from tclearn.learning.data import ImageData, load_segmentation
from tclearn.learning.manifest import fingerprint
from tclearn.learning.models import ModelConfig
from tclearn.learning.train import TrainConfig
from tclearn.ledger.accounts import choose_signer
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.deployment import open_deployment
from tclearn.ledger.directory import ChainDirectory
from tclearn.site.config import SiteConfig
from tclearn.types import Variant
from tclearn.vault.http import HttpStore
from tclearn.vault.keys import key_password, load_key


@dataclass
class Site:
    """A hospital's view of its coalition: the context every duty takes, and its own place in it."""

    config: SiteConfig
    coalition: Coalition
    hospital: Hospital

    @property
    def client(self) -> LedgerClient:
        return self.coalition.client

    def close(self) -> None:
        store = self.coalition.store
        if isinstance(store, HttpStore):
            store.close()
        if self.hospital.he is not None and isinstance(self.hospital.he.supervisor, HttpSupervisorClient):
            self.hospital.he.supervisor.close()


def _x25519(config: SiteConfig, variant: Variant) -> X25519PrivateKey:
    if config.encryption_key is not None:
        return load_key(config.encryption_key, key_password())
    if variant is Variant.B:
        raise ConfigError(f"site {config.name!r}: variant B needs encryption_key (an X25519 key file)")
    return X25519PrivateKey.generate()  # variant A: models are stored in clear; this key opens nothing


def _encrypted_tables(config: SiteConfig) -> tuple[ImageData, ImageData, ImageData]:
    """Variant C: G and the hospital's train and test tables, checked; errors name the field."""
    if not config.global_test.is_file():
        raise ConfigError(f"site {config.name!r}: global_test must be G's CSV file in variant C; {config.global_test}")
    missing = [name for name in ("train.csv", "test.csv") if not (config.data / name).is_file()]
    if missing:
        raise ConfigError(
            f"site {config.name!r}: data must be a folder holding train.csv and test.csv in variant C; "
            f"{config.data} lacks {', '.join(missing)}"
        )
    global_test = load_table(config.global_test, config.label_column)
    columns = model_spec(global_test).features
    train, test = (load_table(config.data / f"{s}.csv", config.label_column, columns) for s in ("train", "test"))
    return global_test, train, test


def open_site(config: SiteConfig) -> Site:
    """Connects to the coalition as this hospital and loads its data; errors name the file or field."""
    _, client = open_deployment(config.deployment, config.chain_url)
    variant = client.variant()
    if variant is Variant.C and config.supervisor_url is None:
        raise ConfigError(f"site {config.name!r}: variant C needs supervisor_url (the supervisor service)")
    if variant is not Variant.C and config.supervisor_url is not None:
        raise ConfigError(f"site {config.name!r}: supervisor_url is for variant C; this coalition is {variant.name}")
    if variant is Variant.C:
        global_test, train, test = _encrypted_tables(config)
        manifest = fingerprint(config.data / "train.csv")
    else:
        global_test = load_segmentation(config.global_test)
        train, test = load_segmentation(config.data / "train"), load_segmentation(config.data / "test")
        manifest = fingerprint(config.data / "train")
    account = choose_signer(client.chain.chain_id, client.chain.embedded, config.keystore, config.dev_account)
    hospital = Hospital(config.name, account, _x25519(config, variant), train, test, manifest, config.attack)
    model = ModelConfig(arch=config.model.arch, **config.model.model_dump(exclude={"arch"}))  # type: ignore[arg-type]
    training = TrainConfig(**config.training.model_dump())
    policy = AcceptancePolicy(**config.policy.model_dump())
    store = HttpStore(config.vault_url, account.key)
    if variant is Variant.C:
        assert config.supervisor_url is not None
        supervisor = HttpSupervisorClient(config.supervisor_url, account.key)
        try:
            coalition = encrypted_coalition(
                client,
                store,
                find_supervisor(client),
                global_test,
                [(hospital, supervisor)],
                model=model,
                training=training,
                policy=policy,
                steps=config.he.steps,
                lr=config.he.lr,
                directory_ttl=30.0,
            )
        except BaseException:
            store.close()
            supervisor.close()
            raise
        return Site(config, coalition, coalition.hospitals[0])
    coalition = Coalition(
        client,
        store,
        variant,
        model,
        training,
        policy,
        global_test,
        [hospital],
        directory=ChainDirectory(client, ttl=30.0),
    )
    return Site(config, coalition, hospital)
