"""`tclearn watermark verify` on a watermarked coalition (embedded chain, the demo's vault): a committed model carries
the mark (exit 0), a model of another seed does not (exit 1), and a corrupt file, another architecture, a key blob
that is not the committed key or a sealed key without the member's key file are errors (exit 2, one line)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from services.member.governance import policy_of
from tclearn.cli import watermark as command
from tclearn.cli.app import app
from tclearn.coalition.backend import tensors
from tclearn.coalition.context import Coalition
from tclearn.coalition.founding import genesis_weights
from tclearn.coalition.policy import AcceptancePolicy, WatermarkPolicy
from tclearn.coalition.rounds import run_round
from tclearn.coalition.watermark import store_key
from tclearn.learning.modelfile import read_weights, save_state
from tclearn.learning.synth import synth_coalition
from tclearn.learning.watermark import MarkKey, measure, new_key
from tclearn.ledger.chain import embedded_chain
from tclearn.records import IntegrityReport
from tclearn.simulation.demo import DemoSettings, setup
from tclearn.types import Variant
from tclearn.vault.codec import encode_model
from tclearn.vault.keys import PASSWORD_ENV, save_key

runner = CliRunner()
MEMBERS = 3


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("verify") / "data"
    synth_coalition(root, hospitals=MEMBERS, train=8, test=4, global_size=8, size=32, seed=0)
    return root


def founded(data: Path, out: Path, variant: Variant, monkeypatch: pytest.MonkeyPatch) -> Coalition:
    """A watermarked coalition with one committed increment; the command reaches its chain client."""
    torch.set_num_threads(1)
    settings = DemoSettings(
        members=MEMBERS, byzantine=0, variant=variant, data=data, epochs=1, watermark=True, baselines=False
    )
    co, _ = setup(settings, embedded_chain(MEMBERS + 2), out)
    assert run_round(co, co.hospitals[0]).state == "committed"
    deployed = SimpleNamespace(chain_id=co.client.chain.chain_id, address=co.client.address)
    monkeypatch.setattr(command, "open_deployment", lambda path, url: (deployed, co.client))
    return co


def verify(out: Path, model: Path, *extra: str) -> Any:
    return runner.invoke(app, ["watermark", "verify", str(model), "--vault", f"file://{out / 'vault'}", *extra])


def head(co: Coalition) -> dict[str, torch.Tensor]:
    ref = co.client.get_model(co.client.head(), with_uri=False)
    return co.backend.open(co.hospitals[0], ref.model_hash.hex())  # type: ignore[no-any-return]


def test_a_committed_model_carries_the_mark_and_another_seeds_does_not(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    co = founded(data, tmp_path, Variant.A, monkeypatch)
    committed = tmp_path / "head.bin"  # the vault's codec, whatever the name
    committed.write_bytes(encode_model(head(co)))
    result = verify(tmp_path, committed, "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert (shown["carries"], shown["errors"], shown["bits"], shown["max_ber"]) == (True, 0, 128, 0.1)
    assert shown["p_value"] == pytest.approx(2.0**-128)

    other = tmp_path / "other.pt"  # the same architecture from another seed, as a torch state dict
    save_state(other, genesis_weights(tensors(co.backend, "test").config, seed=1))
    result = verify(tmp_path, other)
    assert result.exit_code == 1, result.output
    assert "does not carry the coalition's watermark" in result.stdout and "max_ber 0.1" in result.stdout


def test_errors_exit_2_with_one_line(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    co = founded(data, tmp_path, Variant.A, monkeypatch)
    good = encode_model(head(co))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good[: len(good) // 2])
    foreign = tmp_path / "foreign.pt"
    save_state(foreign, {"fc.weight": torch.randn(8, 8)})
    cases = {
        truncated: "cannot read model file",
        tmp_path / "missing.pt": "no model file",
        foreign: "it is not of the coalition's architecture",
    }
    for path, message in cases.items():
        result = verify(tmp_path, path)
        assert result.exit_code == 2, (path, result.output)
        assert result.stderr.startswith("error: ") and message in result.stderr and len(result.stderr.splitlines()) == 1

    # the chain's policy commits to one key; a vault whose blob holds another is refused, naming both
    assert co.policy.watermark is not None and co.watermark is not None
    other = new_key(head(co), "coalition")
    forged = dataclasses.replace(co.policy.watermark, blob=store_key(co.store, other))
    monkeypatch.setattr(
        "tclearn.coalition.declared.declared_policy",
        lambda client, store: (dataclasses.replace(co.policy, watermark=forged), b""),
    )
    model = tmp_path / "head.safetensors"
    model.write_bytes(good)
    result = verify(tmp_path, model)
    assert result.exit_code == 2
    assert "is not the one the coalition committed to" in result.stderr
    assert co.watermark.sha256() in result.stderr and other.sha256() in result.stderr

    monkeypatch.setattr("tclearn.coalition.declared.declared_policy", lambda client, store: (AcceptancePolicy(), b""))
    result = verify(tmp_path, model)
    assert result.exit_code == 2 and "the coalition has no watermark" in result.stderr


def test_a_sealed_key_is_read_with_the_members_key_file(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    co = founded(data, tmp_path, Variant.B, monkeypatch)
    model = tmp_path / "head.safetensors"
    model.write_bytes(encode_model(head(co)))
    result = verify(tmp_path, model)
    assert result.exit_code == 2 and "give --encryption-key" in result.stderr

    monkeypatch.setenv(PASSWORD_ENV, "pw")
    key_file = tmp_path / "h2.key"
    save_key(key_file, co.hospitals[1].key, b"pw")
    result = verify(tmp_path, model, "--dev-account", "2", "--encryption-key", str(key_file))
    assert result.exit_code == 0, result.output
    assert "0 of 128 bits read wrong" in result.stdout and "carries the coalition's watermark" in result.stdout

    wrong = tmp_path / "h1.key"
    save_key(wrong, co.hospitals[0].key, b"pw")  # hospital 1's key file with hospital 2's account
    result = verify(tmp_path, model, "--dev-account", "2", "--encryption-key", str(wrong))
    assert result.exit_code == 2 and "cannot open the coalition's watermark key" in result.stderr


def policy(out: Path, *settings: str) -> Any:
    return runner.invoke(app, ["coalition", "policy", "-o", str(out), *(a for s in settings for a in ("--set", s))])


def test_a_policy_record_keeps_the_founding_watermark_with_its_bound(tmp_path: Path) -> None:
    key, blob = "ab" * 32, "cd" * 32
    out = tmp_path / "policy.json"
    committed = (f"watermark.key={key}", f"watermark.blob={blob}")
    result = policy(out, *committed, "watermark.max_ber=0.05")
    assert result.exit_code == 0, result.output
    record = AcceptancePolicy.parse(out.read_bytes())
    assert record.watermark == WatermarkPolicy(key, blob, max_ber=0.05) and record.privacy is None
    assert result.stdout.strip() == record.sha256()
    # the same settings through the member API's policy proposals
    assert policy_of({"watermark": {"key": key, "blob": blob, "max_ber": 0.05}}) == record

    refused = policy(out, "watermark.max_ber=0.05")
    assert refused.exit_code == 1 and "need watermark.key and watermark.blob" in refused.stderr
    refused = policy(out, *committed, "watermark.max_ber=0.6")
    assert refused.exit_code == 1 and "max_ber must be in [0, 0.5)" in refused.stderr


def test_a_key_drawn_for_a_genesis_file_is_the_record_its_hash_names(tmp_path: Path) -> None:
    genesis = tmp_path / "genesis.safetensors"
    weights = {"conv.weight": torch.randn(64, 32, 3, 3), "conv.bias": torch.randn(64)}
    genesis.write_bytes(encode_model(weights))
    out = tmp_path / "key.json"
    result = runner.invoke(app, ["watermark", "key", str(genesis), "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = MarkKey.parse(out.read_bytes())
    assert result.stdout.strip() == record.sha256() and out.stat().st_mode & 0o777 == 0o600
    assert (record.purpose, record.carrier, record.bits) == ("coalition", ("conv.weight",), 128)
    assert measure(weights, record).errors > 16  # a fresh secret: nothing carries it yet
    again = runner.invoke(app, ["watermark", "key", str(genesis), "--out", str(out)])
    assert again.exit_code == 2 and "already exists" in again.stderr and MarkKey.parse(out.read_bytes()) == record


def test_a_key_with_the_genesis_stamped_to_found_with(tmp_path: Path) -> None:
    genesis = tmp_path / "genesis.safetensors"
    weights = {"conv.weight": torch.randn(64, 32, 3, 3), "conv.bias": torch.randn(64)}
    genesis.write_bytes(encode_model(weights))
    out, stamped = tmp_path / "key.json", tmp_path / "stamped.safetensors"
    result = runner.invoke(app, ["watermark", "key", str(genesis), "--out", str(out), "--stamped", str(stamped)])
    assert result.exit_code == 0, result.output
    record = MarkKey.parse(out.read_bytes())
    marked = read_weights(stamped)
    assert measure(marked, record).errors == 0 and measure(weights, record).errors > 16
    assert torch.equal(marked["conv.bias"], weights["conv.bias"])
    again = runner.invoke(
        app, ["watermark", "key", str(genesis), "--out", str(tmp_path / "k2.json"), "--stamped", str(stamped)]
    )
    assert again.exit_code == 2 and "stamped.safetensors already exists" in again.stderr
    assert not (tmp_path / "k2.json").exists()


@pytest.mark.slow
def test_a_watermarked_demo_commits_marked_models_and_refuses_a_sign_flip(tmp_path: Path) -> None:
    options = ("--members", "3", "--byzantine", "1", "--rounds", "3", "--cases", "16", "--variant", "A")
    result = runner.invoke(app, ["demo", "--watermark", *options, "--json", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [(c["state"], c["byzantine"]) for c in summary["candidates"]] == [
        ("committed", False),
        ("committed", False),
        ("rejected", True),
    ]
    assert summary["audit_ok"] is True
    blobs = (p.read_bytes() for p in (tmp_path / "vault" / "blobs").glob("*/*"))
    reports = [IntegrityReport.parse(raw) for raw in blobs if raw.startswith(b'{"candidate"') and b'"checks"' in raw]
    by_id = {r.candidate: r for r in reports}
    for honest in (1, 2):
        (read,) = (c for c in by_id[honest].checks if c.name == "watermark")
        assert read.ok and read.detail.startswith("BER 0.000 (0 of 128 bits wrong)")
    # the sign flip of its update pulls the carrier back across the mark: measured at seed 0, 14 of 128 bits wrong,
    # refused on the watermark before its update size is measured (which would refuse it too)
    failed = next(c for c in by_id[3].checks if not c.ok)
    assert failed.name in ("watermark", "update") and not by_id[3].ok


def test_a_sites_member_toml_stands_for_the_options(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    co = founded(data, tmp_path, Variant.B, monkeypatch)
    model = tmp_path / "head.safetensors"
    model.write_bytes(encode_model(head(co)))
    monkeypatch.setenv(PASSWORD_ENV, "pw")
    save_key(tmp_path / "h3.key", co.hospitals[2].key, b"pw")
    (tmp_path / "member.toml").write_text(
        f'name = "hospital-3"\ndeployment = "deployment.json"\nvault_url = "file://{tmp_path / "vault"}"\n'
        'dev_account = 3\nencryption_key = "h3.key"\ndata = "data"\nglobal_test = "G"\n'
    )
    result = runner.invoke(app, ["watermark", "verify", str(model), "--config", str(tmp_path / "member.toml")])
    assert result.exit_code == 0, result.output
    assert "carries the coalition's watermark" in result.stdout

    result = runner.invoke(app, ["watermark", "verify", str(model)])
    assert result.exit_code == 2 and "give the coalition's vault (--vault URL) or a site's member.toml" in result.stderr
