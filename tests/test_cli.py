"""The CLI against a real Anvil node: chain up, accounts, deploy, members, ledger show, demo, bad input."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import pytest
from typer.testing import CliRunner

import tclearn
from tclearn.cli.app import app
from tclearn.coalition.policy import AcceptancePolicy, PrivacyPolicy
from tclearn.errors import ConfigError, NoContract, NotFoundError, TclearnError, WrongChain
from tclearn.ledger.accounts import dev_accounts
from tclearn.ledger.deployment import open_deployment
from tclearn.ledger.localchain import LocalNode, free_port
from tclearn.records import RunSummary

runner = CliRunner()
GENESIS = "0x" + "ab" * 32
POLICY = "0x" + "cd" * 32


def invoke(*args: str, env: dict[str, str] | None = None) -> object:
    result = runner.invoke(app, list(args), env=env)
    if isinstance(result.exception, TclearnError):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


def _config(tmp_path: Path, url: str, **extra: str) -> Path:
    member = dev_accounts(3)[1].address
    extra = {"policy_hash": f'"{POLICY}"', **extra}
    lines = [
        'variant = "B"',
        f'genesis_hash = "{GENESIS}"',
        'genesis_uri = "vault://genesis"',
        "general_timeout = 60",
        *(f"{k} = {v}" for k, v in extra.items()),
        "[chain]",
        f'url = "{url}"',
        "[[members]]",
        f'address = "{member}"',
        'roles = ["member", "validator"]',
        'name = "St Luke"',
    ]
    path = tmp_path / "coalition.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_deploy_founders_and_show(anvil_node: LocalNode, tmp_path: Path) -> None:
    cfg, dep = _config(tmp_path, anvil_node.url), tmp_path / "deployment.json"
    invoke("coalition", "deploy", "--config", str(cfg), "--out", str(dep), "--dev-account", "0")
    deployment = json.loads(dep.read_text())
    assert deployment["chain_id"] == 31337 and deployment["variant"] == "B"
    shown = json.loads(invoke("ledger", "show", "-d", str(dep), "--json").output)  # type: ignore[attr-defined]
    assert [m["name"] for m in shown["members"]] == ["St Luke"]  # the founder; the deployer is no member
    assert shown["models"][0]["model_hash"] == GENESIS and shown["lineage"] == [0]
    assert shown["policy_hash"] == POLICY
    declared = json.loads(invoke("ledger", "policy", "-d", str(dep)).output)  # type: ignore[attr-defined]
    assert declared["policy_hash"] == POLICY and declared["settings"] is None
    assert declared["declared"] == [{"hash": POLICY, "from_model": 0, "block": deployment["block"]}]
    table = invoke("ledger", "show", "-d", str(dep), env={"COLUMNS": "250"}).output  # type: ignore[attr-defined]
    assert "St Luke" in table and "committed" in table and f"acceptance policy {POLICY}" in table
    with pytest.raises(ConfigError, match="already exists"):
        invoke("coalition", "deploy", "--config", str(cfg), "--out", str(dep), "--dev-account", "0")


def test_a_coalition_deployed_with_a_privacy_cap_keeps_it_on_chain(anvil_node: LocalNode, tmp_path: Path) -> None:
    cfg, dep = _config(tmp_path, anvil_node.url, epsilon_cap="2.5"), tmp_path / "deployment.json"
    invoke("coalition", "deploy", "--config", str(cfg), "--out", str(dep), "--dev-account", "0")
    _, client = open_deployment(dep)
    assert client.parameters().epsilon_cap == 2_500_000  # millionths
    (tmp_path / "bad").mkdir()
    bad = _config(tmp_path / "bad", anvil_node.url, epsilon_cap="0")  # a cap of nothing: say none instead
    with pytest.raises(ConfigError, match="epsilon_cap"):
        invoke("coalition", "deploy", "--config", str(bad), "--out", str(tmp_path / "bad.json"), "--dev-account", "0")


def test_a_coalition_continues_another_from_its_head(anvil_node: LocalNode, tmp_path: Path) -> None:
    old_cfg, old = _config(tmp_path, anvil_node.url), tmp_path / "old.json"
    invoke("coalition", "deploy", "-c", str(old_cfg), "-o", str(old), "--dev-account", "0")
    new = tmp_path / "new.json"
    out = invoke(
        "coalition", "deploy", "-c", str(old_cfg), "-o", str(new), "--dev-account", "0", "--continue-from", str(old)
    )
    assert "continuing the v2 coalition" in out.output  # type: ignore[attr-defined]
    old_address = json.loads(old.read_text())["address"]
    shown = json.loads(invoke("ledger", "show", "-d", str(new), "--json").output)  # type: ignore[attr-defined]
    assert shown["founding"]["predecessor"] == {"chain_id": 31337, "coalition": old_address, "head_id": 0}
    assert shown["models"][0]["model_hash"] == GENESIS  # the old head: here its genesis
    other = tmp_path / "a.toml"
    other.write_text(old_cfg.read_text().replace('variant = "B"', 'variant = "A"'))
    with pytest.raises(ConfigError, match=r"is a variant B coalition and .* says variant A"):
        invoke(
            "coalition",
            "deploy",
            "-c",
            str(other),
            "-o",
            str(tmp_path / "x.json"),
            "--dev-account",
            "0",
            "--continue-from",
            str(old),
        )


def test_signing_with_a_keystore(anvil_node: LocalNode, tmp_path: Path) -> None:
    env = {"TCLEARN_KEYSTORE_PASSWORD": "s3cret"}
    keystore = tmp_path / "admin.json"
    invoke("account", "import", str(keystore), "--dev-account", "0", env=env)
    cfg, dep = _config(tmp_path, anvil_node.url), tmp_path / "d.json"
    invoke("coalition", "deploy", "-c", str(cfg), "-o", str(dep), "--keystore", str(keystore), env=env)
    assert json.loads(dep.read_text())["deployer"] == dev_accounts(1)[0].address
    refused = runner.invoke(
        app,
        ["gov", "propose", "remove", dev_accounts(2)[1].address, "-d", str(dep), "--keystore", str(keystore)],
        env={"TCLEARN_KEYSTORE_PASSWORD": "wrong"},
    )
    assert refused.exit_code == 1 and "wrong password" in refused.stderr


def test_bad_input_is_named(anvil_node: LocalNode, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"missing\.toml"):
        invoke("coalition", "deploy", "-c", str(tmp_path / "missing.toml"), "--dev-account", "0")
    bad = _config(tmp_path, anvil_node.url, voting_timeout="-5")
    with pytest.raises(ConfigError, match="voting_timeout"):
        invoke("coalition", "deploy", "-c", str(bad), "-o", str(tmp_path / "x.json"), "--dev-account", "0")
    undeclared = _config(tmp_path, anvil_node.url, policy_hash=f'"0x{"00" * 32}"')
    with pytest.raises(ConfigError, match=r"policy_hash: .*declares its acceptance policy: .*tclearn coalition policy"):
        invoke("coalition", "deploy", "-c", str(undeclared), "-o", str(tmp_path / "x.json"), "--dev-account", "0")
    cfg, dep = _config(tmp_path, anvil_node.url), tmp_path / "d.json"
    invoke("coalition", "deploy", "-c", str(cfg), "-o", str(dep), "--dev-account", "0")
    deployment = json.loads(dep.read_text())
    (tmp_path / "wrong-chain.json").write_text(json.dumps({**deployment, "chain_id": 5}))
    with pytest.raises(WrongChain, match="chain id 31337"):
        invoke("ledger", "show", "-d", str(tmp_path / "wrong-chain.json"))
    (tmp_path / "no-contract.json").write_text(json.dumps({**deployment, "address": deployment["deployer"]}))
    with pytest.raises(NoContract):
        invoke("ledger", "show", "-d", str(tmp_path / "no-contract.json"))
    refused = runner.invoke(
        app, ["gov", "propose", "admit", deployment["deployer"], "--roles", "doctor", "-d", str(dep)]
    )
    assert refused.exit_code == 1 and "unknown role 'doctor'" in refused.stderr
    refused = runner.invoke(app, ["gov", "propose", "remove", deployment["deployer"], "-d", str(dep)])
    assert refused.exit_code == 1 and "exactly one of" in refused.stderr
    no_founder = _config(tmp_path, anvil_node.url).read_text().split("[[members]]")[0]
    (tmp_path / "nobody.toml").write_text(no_founder)
    with pytest.raises(ConfigError, match="members"):
        invoke(
            "coalition",
            "deploy",
            "-c",
            str(tmp_path / "nobody.toml"),
            "-o",
            str(tmp_path / "y.json"),
            "--dev-account",
            "0",
        )


def test_a_policy_record_is_written_with_its_hash(tmp_path: Path) -> None:
    out = tmp_path / "policy.json"
    printed = invoke("coalition", "policy", "-o", str(out), "--set", "max_drift=0.04", "--set", "min_batch_size=8")
    record = AcceptancePolicy.parse(out.read_bytes())
    assert record == AcceptancePolicy(max_drift=0.04, min_batch_size=8)
    assert printed.output.strip() == hashlib.sha256(out.read_bytes()).hexdigest()  # type: ignore[attr-defined]
    for bad, why in [("drift=1", "NAME one of tolerance_global"), ("min_batch_size=2.5", "takes a int")]:
        refused = runner.invoke(app, ["coalition", "policy", "-o", str(out), "--set", bad])
        assert refused.exit_code == 1 and why in refused.stderr and "Traceback" not in refused.output
    refused = runner.invoke(app, ["coalition", "policy", "-o", str(out), "--set", "max_drift=2"])
    assert refused.exit_code == 1 and "max_drift must be between 0 and 1, got 2.0" in refused.stderr
    invoke("coalition", "policy", "-o", str(out), "--set", "privacy.epsilon_cap=3", "--set", "privacy.required=false")
    assert AcceptancePolicy.parse(out.read_bytes()).privacy == PrivacyPolicy(required=False, epsilon_cap=3.0)
    for bad, why in [
        ("privacy.epsilon_cap=0", "epsilon_cap must be a positive number"),
        ("privacy.epsilon_cap=-1", "epsilon_cap must be a positive number"),
        ("privacy.required=maybe", "privacy.required takes true or false"),
        ("privacy.delta=1", "delta must be in (0, 1)"),
        ("privacy.accountant=gdp", "accountant must be one of rdp, prv"),
        ("privacy.cap=3", "NAME one of"),
    ]:
        refused = runner.invoke(app, ["coalition", "policy", "-o", str(out), "--set", bad])
        assert refused.exit_code == 1 and why in refused.stderr and "Traceback" not in refused.output, bad


def test_user_mistake_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tclearn.cli.app", "ledger", "show", "-d", str(tmp_path / "nope.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: ") and "nope.json does not exist" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stdout + proc.stderr


def test_chain_up_writes_keys_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port, keys = free_port(), tmp_path / "keys.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tclearn.cli.app", "chain", "up", "--port", str(port), "--keys", str(keys)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not keys.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        written = json.loads(keys.read_text())
        assert written["url"] == f"http://127.0.0.1:{port}"
        assert written["accounts"][0]["address"] == dev_accounts(1)[0].address
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "anvil stopped" in out
    assert not LocalNode("anvil", port)._answers()


SUMMARY_KEYS = {
    "variant",
    "chain",
    "mode",
    "metric",
    "members",
    "validators",
    "byzantine",
    "candidates",
    "committed",
    "rejected",
    "poisoned_submitted",
    "poisoned_committed",
    "honest_rejected",
    "scores",
    "gas",
    "audit_ok",
    "seconds",
    "attacks",
}


def test_demo_writes_summary_report_and_deployment(tmp_path: Path) -> None:
    result = invoke("demo", "--members", "3", "--byzantine", "1", "--rounds", "3", "--json", "--out", str(tmp_path))
    summary = json.loads(result.output)  # type: ignore[attr-defined]
    assert set(summary) == SUMMARY_KEYS
    assert summary == json.loads((tmp_path / "summary.json").read_text())
    assert summary["chain"] == "embedded" and summary["byzantine"] == ["hospital-3"]
    assert summary["poisoned_submitted"] == 1
    assert summary["poisoned_committed"] == 0 and summary["audit_ok"] is True
    assert set(summary["scores"]) == {"coalition", "centralized", "single"}
    assert {c["id"] for c in summary["candidates"]} == {1, 2, 3}
    sign_flip = summary["attacks"]["sign_flip"]  # the one Byzantine candidate, counted under its attack
    assert sign_flip["submitted"] == 1 and sign_flip["committed"] == 0
    assert sum(c["submitted"] for c in summary["attacks"].values()) == 3
    assert [c["round"] for c in summary["candidates"]] == [1, 2, 3]
    assert RunSummary.parse((tmp_path / "summary.json").read_bytes()).to_json() == summary  # a typed record
    report = (tmp_path / "report.html").read_text()
    assert "hospital-3" in report and (tmp_path / "votes.png").stat().st_size > 0
    assert "L of hospital-1" in report and "L of hospital-3" in report
    assert "<h2>Votes by stratum</h2>" in report and "<td>finding:small</td>" in report  # each vote's strata
    assert json.loads((tmp_path / "deployment.json").read_text())["url"] == "embedded"


def test_demo_in_3d_reads_ct_volumes_through_each_sites_window(tmp_path: Path) -> None:
    options = ("--members", "3", "--byzantine", "1", "--rounds", "1", "--json", "--out", str(tmp_path))
    summary = json.loads(invoke("demo", "--dims", "3", *options).output)  # type: ignore[attr-defined]
    assert summary["metric"] == "dice" and summary["audit_ok"] is True and summary["poisoned_submitted"] == 0
    volume = tmp_path / "data" / "global" / "images" / "g-0000-h1.nii.gz"
    assert volume.is_file() and len(nib.load(volume).shape) == 3  # NIfTI volumes, read from disk
    sites = json.loads((tmp_path / "data" / "coalition.json").read_text())["sites"]
    assert sites["hospital-1"]["window"] == [-160.0, 240.0]  # the CT window each site's loader applies
    assert all(0.0 <= score <= 1.0 for score in summary["scores"]["single"].values())


def test_a_dp_demo_has_each_hospital_propose_once_with_its_whole_cap(anvil_node: LocalNode, tmp_path: Path) -> None:
    options = ("--members", "2", "--byzantine", "0", "--attack", "none", "--cases", "16", "--batch-size", "4")
    dp = ("--dp-epsilon", "4", "--variant", "A", "--chain", anvil_node.url)
    out = invoke("demo", *dp, *options, "--json", "--out", str(tmp_path)).output  # type: ignore[attr-defined]
    summary = json.loads(out)
    assert len(summary["candidates"]) == 2 and summary["audit_ok"] is True  # --rounds defaults to one per hospital
    _, client = open_deployment(tmp_path / "deployment.json")
    assert client.parameters().epsilon_cap == 4_000_000
    for candidate in summary["candidates"]:
        charged = client.privacy_charge(candidate["id"])
        assert 3_900_000 < charged <= 4_000_000  # the whole cap, less what the noise search leaves (1%)


def test_demo_multilabel_scores_candidates_by_mean_auc(tmp_path: Path) -> None:
    options = ("--members", "3", "--byzantine", "1", "--rounds", "3", "--json", "--out", str(tmp_path))
    summary = json.loads(invoke("demo", "--task", "multilabel", *options).output)  # type: ignore[attr-defined]
    assert summary["metric"] == "auc" and summary["audit_ok"] is True
    assert summary["poisoned_submitted"] == 1 and summary["poisoned_committed"] == 0  # unchanged policy, on AUC
    assert len(summary["candidates"]) == 3 and 0.0 <= summary["scores"]["centralized"] <= 1.0
    assert "<td>label:" in (tmp_path / "report.html").read_text()  # each label's AUC, per vote


def test_demo_variant_c_runs_the_protocol_on_an_encrypted_model(tmp_path: Path) -> None:
    options = ("--members", "3", "--byzantine", "1", "--rounds", "3", "--json", "--out", str(tmp_path))
    result = invoke("demo", "--variant", "C", *options)
    summary = json.loads(result.output)  # type: ignore[attr-defined]
    assert set(summary) == SUMMARY_KEYS and summary["variant"] == "C" and summary["metric"] == "accuracy"
    assert summary["poisoned_submitted"] == 1 and summary["poisoned_committed"] == 0
    assert summary["committed"] >= 1 and summary["audit_ok"] is True
    assert set(summary["scores"]["single"]) == {"hospital-1", "hospital-2"}
    assert (tmp_path / "data" / "global.csv").is_file() and (tmp_path / "report.html").is_file()
    report = (tmp_path / "report.html").read_text()
    assert "<td>class:0</td>" in report and "<td>class:1</td>" in report  # accuracy within each class, per vote
    log = json.loads((tmp_path / "supervisor-log.json").read_text())
    assert {e["action"] for e in log} == {"score", "refresh", "decrypt", "measure", "aggregate"}
    assert sum(e["action"] == "decrypt" for e in log) == 1  # the head, for the final comparison only
    deployment = json.loads((tmp_path / "deployment.json").read_text())
    assert deployment["variant"] == "C"


def test_data_synth_tabular_writes_the_variant_c_layout(tmp_path: Path) -> None:
    invoke("data", "synth", "--tabular", "--hospitals", "2", "--features", "3", "--out", str(tmp_path))
    header, *rows = (tmp_path / "hospital-2" / "test.csv").read_text().splitlines()
    assert header == "f0,f1,f2,label" and len(rows) == 8 and {r.rsplit(",", 1)[1] for r in rows} <= {"0", "1"}
    assert len((tmp_path / "global.csv").read_text().splitlines()) == 49
    assert json.loads((tmp_path / "coalition.json").read_text())["features"] == 3


def test_data_synth_tabular_gives_every_training_table_both_classes(tmp_path: Path) -> None:
    invoke("data", "synth", "--tabular", "--features", "30", "--train", "32", "--out", str(tmp_path))
    for hospital in ("hospital-1", "hospital-2", "hospital-3"):
        header, *rows = (tmp_path / hospital / "train.csv").read_text().splitlines()
        assert len(header.split(",")) == 31 and len(rows) == 32
        assert {r.rsplit(",", 1)[1] for r in rows} == {"0", "1"}, hospital


def test_data_split_writes_one_real_table_as_a_coalition(tmp_path: Path) -> None:
    rows = "\n".join(f"{40 + k % 50},{(k * 37) % 100 / 10},{int(k % 7 == 0)}" for k in range(300))
    (tmp_path / "cohort.csv").write_text("age,crp,outcome\n" + rows + "\n")
    invoke("data", "split", str(tmp_path / "cohort.csv"), "--by", "age", "--label-column", "outcome",
           "--out", str(tmp_path / "coalition"))  # fmt: skip
    header = (tmp_path / "coalition" / "hospital-3" / "train.csv").read_text().splitlines()[0]
    assert header == "age,crp,label" and (tmp_path / "coalition" / "global.csv").is_file()
    (tmp_path / "bad.csv").write_text("age,crp,label\n50,high,1\n")
    result = runner.invoke(app, ["data", "split", str(tmp_path / "bad.csv"), "--by", "age", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "line 2, column 'crp': 'high' is not a number" in result.output
    assert "Traceback" not in result.output


def test_demo_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="variant C"):
        invoke("demo", "--variant", "C", "--mode", "fedavg", "--out", str(tmp_path))
    tables = tmp_path / "tables"
    (tables / "st-luke").mkdir(parents=True)
    (tables / "st-luke" / "train.csv").write_text("f0,label\n0.5,1\n")
    (tables / "st-mary").mkdir()
    with pytest.raises(NotFoundError, match=r"missing: .*global\.csv.*st-luke/test\.csv.*st-mary/train\.csv"):
        invoke("demo", "--variant", "C", "--data", str(tables), "--members", "2", "--out", str(tmp_path))
    with pytest.raises(ConfigError, match="byzantine"):
        invoke("demo", "--members", "3", "--byzantine", "3", "--out", str(tmp_path))
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(ConfigError, match="holds 0 hospital folder"):
        invoke("demo", "--data", str(data), "--members", "2", "--out", str(tmp_path))
    (data / "st-luke" / "train").mkdir(parents=True)
    (data / "st-mary").mkdir()
    with pytest.raises(NotFoundError, match=r"missing: .*global/images.*st-luke/train/images"):
        invoke("demo", "--data", str(data), "--members", "2", "--out", str(tmp_path))
    with pytest.raises(ConfigError, match=r"2 attacks for 1 Byzantine members: .*\(--byzantine 2\)"):
        invoke("demo", "--attack", "drift", "--attack", "targeted", "--out", str(tmp_path))
    with pytest.raises(ConfigError, match="the little_is_enough attack needs FedAvg rounds"):
        invoke("demo", "--attack", "little_is_enough", "--out", str(tmp_path))
    (tmp_path / "policy.json").write_text('{"max_drift": 3}')
    with pytest.raises(ConfigError, match=r"policy\.json is no acceptance policy: .*max_drift"):
        invoke("demo", "--policy", str(tmp_path / "policy.json"), "--out", str(tmp_path))
    invoke("coalition", "policy", "--set", "aggregator=trimmed_mean", "--out", str(tmp_path / "policy.json"))
    with pytest.raises(ConfigError, match="--aggregator median contradicts the policy file's aggregator trimmed_mean"):
        invoke("demo", "--policy", str(tmp_path / "policy.json"), "--aggregator", "median", "--out", str(tmp_path))


def test_module_entry_point_help() -> None:
    proc = subprocess.run([sys.executable, "-m", "tclearn.cli.app", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "coalition" in proc.stdout


def test_version_prints_the_package_version() -> None:
    proc = subprocess.run([sys.executable, "-m", "tclearn.cli.app", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == f"tclearn {tclearn.__version__}"


def test_the_package_says_it_is_typed() -> None:
    assert (Path(tclearn.__file__).parent / "py.typed").is_file()
