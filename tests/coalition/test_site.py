"""A hospital's site config (`member.toml` / `node.toml`) and the coalition opened from it, on a real Anvil."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from services.vault.app import create_app
from tclearn.cli.app import app
from tclearn.coalition.backend import PlainBackend
from tclearn.coalition.build import Tables
from tclearn.coalition.ckks import CkksBackend, encrypted_genesis, supervisor_founder
from tclearn.coalition.founding import Founder, found
from tclearn.coalition.policy import AcceptancePolicy
from tclearn.config import save_deployment
from tclearn.errors import ConfigError, ConflictError, DataError, NotFoundError
from tclearn.he.client import HttpSupervisorClient
from tclearn.learning.privacy import Mechanism, epsilon_spent, poisson_steps
from tclearn.learning.synth import synth_coalition
from tclearn.learning.tabular import synth_tabular
from tclearn.ledger.accounts import dev_accounts
from tclearn.ledger.chain import connect
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.deployment import deployment_of, open_deployment
from tclearn.ledger.directory import ChainDirectory
from tclearn.ledger.localchain import LocalNode
from tclearn.site.config import load_site_config
from tclearn.site.finetune import plan
from tclearn.site.open import Site, open_site
from tclearn.state.db import Database
from tclearn.types import Variant
from tclearn.vault.audience import Audience, CoalitionId
from tclearn.vault.envelope import public_bytes
from tclearn.vault.http import HttpStore
from tclearn.vault.store import FsspecStore
from tests.test_cli import _config, invoke, runner
from tests.vault.conftest import serve_app


def _site(folder: Path, **extra: str) -> Path:
    fields = {
        "name": '"hospital-1"',
        "deployment": '"deployment.json"',
        "vault_url": '"http://127.0.0.1:9"',
        "data": '"data/hospital-1"',
        "global_test": '"data/global"',
        "state": '"sqlite:///state/site.db"',
        **extra,
    }
    path = folder / "member.toml"
    path.write_text("".join(f"{k} = {v}\n" for k, v in fields.items()))
    return path


POLICY = AcceptancePolicy(tolerance_global=0.05, min_batch_size=4)


@pytest.fixture(scope="module")
def deployed(anvil_node: LocalNode, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A variant A coalition deployed by `tclearn coalition deploy`, its policy record in the file vault `vault/`."""
    folder = tmp_path_factory.mktemp("site")
    policy = FsspecStore(f"file://{folder / 'vault'}").put(POLICY.encode())
    cfg = _config(folder, anvil_node.url, variant='"A"', policy_hash=f'"0x{policy}"')
    cfg.write_text(cfg.read_text().replace('variant = "B"\n', "", 1))
    invoke("coalition", "deploy", "--config", str(cfg), "--out", str(folder / "deployment.json"), "--dev-account", "0")
    synth_coalition(folder / "data", hospitals=2, train=4, test=2, global_size=4, size=32)
    return folder


@pytest.fixture(scope="module")
def vault_url(deployed: Path) -> Iterator[str]:
    """The deployed coalition's vault service, as a quoted TOML string."""
    _, client = open_deployment(deployed / "deployment.json")
    store, directory, ours = (
        FsspecStore(f"file://{deployed / 'vault'}"),
        ChainDirectory(client),
        CoalitionId.of_client(client),
    )
    with serve_app(lambda url: create_app(store, Database("sqlite://"), directory, Audience.of(url, ours))) as url:
        yield f'"{url}"'


def test_relative_paths_are_taken_from_the_file_folder(deployed: Path) -> None:
    config = load_site_config(_site(deployed, dev_account="1"))
    assert config.data == deployed / "data" / "hospital-1"
    assert config.deployment == deployed / "deployment.json"
    assert config.state == f"sqlite:///{deployed / 'state' / 'site.db'}"
    assert config.finetuned == deployed / "finetuned"
    assert config.exports == deployed / "exports"


def test_open_site_sees_the_coalition_as_its_hospital(deployed: Path, vault_url: str) -> None:
    site = open_site(load_site_config(_site(deployed, dev_account="1", vault_url=vault_url)))
    try:
        assert site.coalition.policy == POLICY  # the chain's, though the site's file names none
        assert site.coalition.backend.variant is Variant.A and isinstance(site.coalition.backend, PlainBackend)
        assert site.hospital.address == dev_accounts(2)[1].address
        assert site.coalition.hospitals == [site.hospital]
        assert len(site.hospital.train) == 4 and len(site.coalition.global_test) == 4
        assert isinstance(site.coalition.store, HttpStore)
        assert site.client.get_member(site.hospital.address) is not None
    finally:
        site.close()


def test_bad_site_files_are_named(deployed: Path) -> None:
    with pytest.raises(ConfigError, match="exactly one of keystore"):
        load_site_config(_site(deployed))
    with pytest.raises(ConfigError, match=r"member\.toml: training\.batch_size"):
        load_site_config(_site(deployed, dev_account="1", **{"training": "{ batch_size = 0 }"}))
    with pytest.raises(ConfigError, match="colour"):
        load_site_config(_site(deployed, dev_account="1", colour='"red"'))
    with pytest.raises(NotFoundError, match="hospital-9"):
        site = _site(deployed, dev_account="1")
        site.write_text(site.read_text().replace("hospital-1", "hospital-9"))
        open_site(load_site_config(site))


TABLES = ("train.csv", "test.csv")


@dataclass
class Encrypted:
    folder: Path
    client: LedgerClient
    store: FsspecStore
    context: str


@pytest.fixture(scope="module")
def encrypted(anvil_node: LocalNode, tmp_path_factory: pytest.TempPathFactory) -> Encrypted:
    """A variant C coalition founded on Anvil: two hospitals and the supervisor, whose key is the context hash."""
    folder = tmp_path_factory.mktemp("site-c")
    synth_tabular(folder / "data", hospitals=2, train=48, test=24, global_size=48, features=4)
    store = FsspecStore(f"file://{folder / 'vault'}")
    global_test = Tables().global_test(folder / "data" / "global.csv")
    genesis = encrypted_genesis(store, global_test, 0)
    deployer, *hospitals, supervisor = dev_accounts(4)
    founders = [Founder(a.address, public_bytes(X25519PrivateKey.generate()), f"h{i}") for i, a in enumerate(hospitals)]
    client, deployed = found(
        connect(anvil_node.url),
        deployer,
        store,
        Variant.C,
        genesis.model_hash,
        [*founders, supervisor_founder(supervisor.address, genesis.context)],
        policy=AcceptancePolicy(),
    )
    save_deployment(deployment_of(client, deployed.block_number, deployed.tx_hash, "C"), folder / "deployment.json")
    return Encrypted(folder, client, store, genesis.context)


@contextmanager
def _variant_c_site(encrypted: Encrypted, drop_last_column: bool = False) -> Iterator[Site]:
    """A variant C site opened against a live vault (its supervisor unreachable: nothing here asks it)."""
    directory, ours = ChainDirectory(encrypted.client), CoalitionId.of_client(encrypted.client)
    with serve_app(
        lambda url: create_app(encrypted.store, Database("sqlite://"), directory, Audience.of(url, ours))
    ) as url:
        shared, own = encrypted.folder / "shared" / "G.csv", encrypted.folder / "own" / "st-luke"
        own.mkdir(parents=True, exist_ok=True)
        shared.parent.mkdir(exist_ok=True)
        data = encrypted.folder / "data"  # G apart from the hospital's own tables
        for source, target in ((data / "global.csv", shared), *((data / "hospital-1" / n, own / n) for n in TABLES)):
            rows = [line.split(",") for line in source.read_text().splitlines()]
            kept = [[*r[:-2], r[-1]] if drop_last_column else r for r in rows]
            target.write_text("\n".join(",".join(r) for r in kept) + "\n")
        fields = {"vault_url": f'"{url}"', "global_test": '"shared/G.csv"', "data": '"own/st-luke"', "dev_account": "1"}
        site = open_site(load_site_config(_site(encrypted.folder, supervisor_url='"http://127.0.0.1:9"', **fields)))
        try:
            yield site
        finally:
            site.close()


def test_a_variant_c_site_holds_the_registered_public_context_and_a_signed_supervisor_client(
    encrypted: Encrypted,
) -> None:
    with _variant_c_site(encrypted) as site:
        backend = site.coalition.backend
        assert isinstance(backend, CkksBackend) and backend.variant is Variant.C
        assert backend.context.hash == encrypted.context and not backend.context.can_decrypt
        assert backend.spec.features == 4
        supervisor = backend.clients[site.hospital.address]
        assert isinstance(supervisor, HttpSupervisorClient)
        assert supervisor.account.address == site.hospital.address == dev_accounts(2)[1].address
        assert len(site.hospital.train) == 48 and len(site.hospital.local_test) == 24
        assert len(site.coalition.global_test) == 48


def test_tables_that_agree_with_each_other_but_not_with_the_coalition_model_are_refused(
    encrypted: Encrypted,
) -> None:
    refused = pytest.raises(
        DataError, match=r"G's feature columns \(f0, f1, f2\) are not those of the coalition's model"
    )
    with refused, _variant_c_site(encrypted, drop_last_column=True):
        pass


def test_bad_variant_c_site_files_name_the_field(encrypted: Encrypted, deployed: Path) -> None:
    table = {"global_test": '"data/global.csv"', "dev_account": "1"}
    with pytest.raises(ConfigError, match="variant C needs supervisor_url"):
        open_site(load_site_config(_site(encrypted.folder, **table)))
    with pytest.raises(ConfigError, match="supervisor_url"):
        load_site_config(_site(encrypted.folder, supervisor_url='"ftp://x"', **table))
    table["supervisor_url"] = '"http://127.0.0.1:9"'
    with pytest.raises(ConfigError, match=r"global_test must be G's CSV file"):
        open_site(load_site_config(_site(encrypted.folder, **{**table, "global_test": '"data"'})))
    with pytest.raises(ConfigError, match=r"data must be a folder holding train.csv and test.csv.*lacks train.csv"):
        open_site(load_site_config(_site(encrypted.folder, **{**table, "data": '"data"'})))
    with pytest.raises(ConfigError, match="supervisor_url is for variant C; this coalition is A"):
        open_site(load_site_config(_site(deployed, dev_account="1", supervisor_url='"http://127.0.0.1:9"')))


def test_a_site_expecting_another_policy_or_smaller_batches_does_not_open(deployed: Path, vault_url: str) -> None:
    site = _site(deployed, dev_account="1", vault_url=vault_url, policy="{ tolerance_global = 0.03, max_drift = 0.05 }")
    with pytest.raises(
        ConfigError, match=r"expects another acceptance policy .*: tolerance_global is 0.05, not 0.03\."
    ):
        open_site(load_site_config(site))
    pinned = _site(deployed, dev_account="1", vault_url=vault_url, policy="{ tolerance_global = 0.05 }")
    open_site(load_site_config(pinned)).close()
    small = _site(deployed, dev_account="1", vault_url=vault_url, training="{ batch_size = 2, min_batch_size = 2 }")
    with pytest.raises(ConfigError, match=r"training.min_batch_size 2 is below the coalition's min_batch_size 4"):
        open_site(load_site_config(small))
    with pytest.raises(ConfigError, match=r"member\.toml: policy: .*tolerance_local must be between 0 and 1"):
        load_site_config(_site(deployed, dev_account="1", policy="{ tolerance_local = 3 }"))


def test_a_site_trains_with_dp_sgd_at_the_epsilon_it_chose(deployed: Path, vault_url: str) -> None:
    chosen = (
        '{ batch_size = 4, min_batch_size = 4, optimiser = "sgd", lr = 1.0, '
        "privacy = { epsilon = 3.0, max_grad_norm = 0.5 } }"
    )
    site = open_site(load_site_config(_site(deployed, dev_account="1", vault_url=vault_url, training=chosen)))
    try:
        backend = site.coalition.backend
        assert isinstance(backend, PlainBackend) and backend.training.dp is not None
        dp = backend.training.dp
        assert (dp.max_grad_norm, dp.delta, dp.accountant.value, dp.unit.value) == (0.5, 1e-5, "rdp", "sample")
        assert (backend.training.optimiser.value, backend.training.lr) == ("sgd", 1.0)
        q, steps = poisson_steps(4, len(site.hospital.train), backend.training.epochs)
        assert epsilon_spent(Mechanism(dp.noise_multiplier, q, steps), dp.delta) <= 3.0  # the noise found for it
        assert epsilon_spent(Mechanism(dp.noise_multiplier * 0.97, q, steps), dp.delta) > 3.0  # and no more
    finally:
        site.close()
    patients = '{ batch_size = 4, min_batch_size = 4, privacy = { epsilon = 3.0, unit = "patient" } }'
    with pytest.raises(ConfigError, match=r"unit = \"patient\" needs .*train/patients.csv"):
        open_site(load_site_config(_site(deployed, dev_account="1", vault_url=vault_url, training=patients)))
    both = "{ privacy = { epsilon = 3.0, noise_multiplier = 1.0 } }"
    with pytest.raises(ConfigError, match=r"give exactly one of epsilon \(per increment\) and noise_multiplier"):
        load_site_config(_site(deployed, dev_account="1", training=both))
    too_few = "{ batch_size = 8, privacy = { epsilon = 3.0 } }"  # 4 training images cannot fill a batch of 8
    with pytest.raises(ConfigError, match=r"\[training.privacy\]: 4 privacy units cannot fill an expected batch"):
        open_site(load_site_config(_site(deployed, dev_account="1", vault_url=vault_url, training=too_few)))


def test_ledger_policy_prints_the_settings_read_from_the_vault(deployed: Path, vault_url: str) -> None:
    key = {"TCLEARN_ETH_KEY": dev_accounts(2)[1].key.hex()}
    args = ["ledger", "policy", "-d", str(deployed / "deployment.json"), "--vault", vault_url.strip('"')]
    printed = json.loads(invoke(*args, env=key).output)  # type: ignore[attr-defined]
    assert printed["policy_hash"] == "0x" + POLICY.sha256() and printed["settings"] == POLICY.to_json()


def test_finetuning_before_any_increment_commits_is_refused_in_one_line(deployed: Path, vault_url: str) -> None:
    """The head is still the genesis: `tclearn member finetune` says so, and writes nothing."""
    config = _site(deployed, dev_account="1", vault_url=vault_url)
    refused = runner.invoke(app, ["member", "finetune", "--config", str(config)])
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert refused.stderr.strip() == (
        "error: the coalition has committed no increment yet: its head is the genesis model 0; "
        "fine-tune once a candidate has committed"
    )
    assert not (deployed / "finetuned").exists()


def test_finetuning_is_refused_in_variant_c(encrypted: Encrypted, tmp_path: Path) -> None:
    refused = pytest.raises(ConflictError, match=r"fine-tuning: the model is encrypted .*\(variant C\)")
    with _variant_c_site(encrypted) as site, refused:
        plan(site.coalition, site.hospital, tmp_path / "finetuned")
    assert not (tmp_path / "finetuned").exists()
