"""The rules of local fine-tuning without a chain: what refuses a run, how options apply, how a run's folder is
written (whole or not at all), and how a fine-tuning job's progress adds up."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from tclearn.errors import ConfigError
from tclearn.learning.train import TrainConfig
from tclearn.site.finetune import FINETUNE_PHASES, FinetuneOptions, refusal, run_name, write_atomically
from tclearn.site.jobs import JobKind, overall_progress


def test_refusals_in_the_order_a_user_fixes_them() -> None:
    assert refusal(3, train_samples=8, test_samples=4, batch_size=4, site="h1") is None
    genesis = refusal(0, train_samples=0, test_samples=0, batch_size=4, site="h1")
    assert genesis is not None and "committed no increment yet" in genesis
    few = refusal(3, train_samples=3, test_samples=4, batch_size=4, site="h1")
    assert few is not None and few.startswith("h1 has 3 training sample(s), fewer than one batch of 4")
    no_l = refusal(3, train_samples=4, test_samples=0, batch_size=4, site="h1")
    assert no_l is not None and "no local test set (L)" in no_l


def test_options_override_the_site_training_and_bad_ones_are_named() -> None:
    site = TrainConfig(epochs=5, batch_size=8, lr=1e-3, min_batch_size=4, seed=7)
    assert FinetuneOptions().applied(site) == site
    tuned = FinetuneOptions(epochs=2, lr=1e-4).applied(site)
    assert (tuned.epochs, tuned.lr, tuned.batch_size, tuned.seed, tuned.min_batch_size) == (2, 1e-4, 8, 7, 4)
    with pytest.raises(ConfigError, match="below the coalition's minimum batch size 4"):
        FinetuneOptions(batch_size=2).applied(site)
    with pytest.raises(ConfigError, match="lr must be > 0"):
        FinetuneOptions(lr=0.0).applied(site)


def test_a_run_folder_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    def fill(staging: Path) -> None:
        (staging / "model.safetensors").write_bytes(b"weights")
        (staging / "model.meta.json").write_text("{}")

    done = write_atomically(tmp_path, "run-1", fill)
    assert done == tmp_path / "run-1" and sorted(p.name for p in done.iterdir()) == [
        "model.meta.json",
        "model.safetensors",
    ]

    def fail_halfway(staging: Path) -> None:
        (staging / "model.safetensors").write_bytes(b"weights")
        raise KeyboardInterrupt  # an interrupted run, as a cancel or a crash would leave it

    with pytest.raises(KeyboardInterrupt):
        write_atomically(tmp_path, "run-2", fail_halfway)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run-1"]  # no run-2, no staging folder


def test_run_names_sort_by_time_and_name_the_head() -> None:
    at = datetime.datetime(2026, 12, 2, 17, 5, 9, tzinfo=datetime.UTC)
    assert run_name(12, "0123456789abcdef", at) == "20261202T170509Z-head12-01234567"


def test_a_finetune_jobs_progress_runs_from_0_to_1_through_its_phases() -> None:
    figures = [overall_progress(phase, f, JobKind.FINETUNE) for phase in FINETUNE_PHASES for f in (0.0, 1.0)]
    assert figures[0] == 0.0 and figures[-1] == 1.0 and figures == sorted(figures)
    assert overall_progress("training", 0.5, JobKind.FINETUNE) == 0.5  # 0.1 before it, 0.8 of it
