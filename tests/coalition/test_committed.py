"""A committed model opened verified from chain and vault: `committed_network` and `tclearn evaluate --model-id`
(embedded chain, the demo's vault)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from tclearn.cli.train import app as train_app
from tclearn.coalition.committed import committed_network
from tclearn.coalition.context import Coalition
from tclearn.coalition.rounds import run_round
from tclearn.errors import NotFoundError
from tclearn.learning.synth import synth_coalition
from tclearn.ledger.chain import embedded_chain
from tclearn.simulation.demo import DemoSettings, setup
from tclearn.types import Variant

MEMBERS = 2
runner = CliRunner()


@pytest.fixture(scope="module")
def coalition(tmp_path_factory: pytest.TempPathFactory) -> tuple[Coalition, Path]:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("committed")
    data = out / "data"
    synth_coalition(data, hospitals=MEMBERS, train=8, test=4, global_size=4, size=32, seed=0)
    settings = DemoSettings(members=MEMBERS, byzantine=0, variant=Variant.A, data=data, epochs=1, baselines=False)
    co, _ = setup(settings, embedded_chain(MEMBERS + 2), out)
    assert run_round(co, co.hospitals[0]).state == "committed"
    return co, data


def test_the_head_opens_as_its_stored_weights(coalition: tuple[Coalition, Path]) -> None:
    co, _ = coalition
    head = co.client.head()
    net = committed_network(co, co.hospitals[1], head)
    stored = co.backend.open(co.hospitals[1], co.client.get_model(head, with_uri=False).model_hash.hex())
    for name, tensor in net.state_dict().items():
        torch.testing.assert_close(tensor, stored[name])
    with pytest.raises(NotFoundError, match=f"no model {co.client.model_count()} on chain"):
        committed_network(co, co.hospitals[1], co.client.model_count())


def test_evaluate_model_id_reports_robustness(
    coalition: tuple[Coalition, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tclearn.site.config as site_config
    import tclearn.site.open as site_open

    co, data = coalition
    site = SimpleNamespace(coalition=co, hospital=co.hospitals[0], close=lambda: None)
    monkeypatch.setattr(site_config, "load_site_config", lambda path, cls: path)
    monkeypatch.setattr(site_open, "open_site", lambda config: site)
    args = ["evaluate", "--model-id", str(co.client.head()), "--config", "member.toml", "--data", str(data / "global")]
    result = runner.invoke(train_app, [*args, "--j2k-ratios", "1,20", "--report", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert [r["ratio"] for r in shown["ratios"]] == [1.0, 20.0]
    assert shown["ratios"][0]["score"] == pytest.approx(shown["baseline"]["score"])
    assert (tmp_path / "r" / "robustness.png").is_file()
    missing = runner.invoke(train_app, ["evaluate", "--model-id", "99", "--data", str(data / "global")])
    assert missing.exit_code == 1 and "no model 99 on chain" in missing.output
