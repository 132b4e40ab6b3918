"""Multi-label classification: the folder reader and its errors, the synthetic CT coalition, the metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from tclearn.cli.data import app as data_app
from tclearn.cli.train import app as train_app
from tclearn.errors import ConfigError, DataError
from tclearn.learning.data import Task
from tclearn.learning.evaluate import evaluate, headline_metric
from tclearn.learning.folders import load_dataset
from tclearn.learning.models import ModelConfig, build_model
from tclearn.learning.multilabel import multilabel_metrics, multilabel_samples, read_label_table
from tclearn.learning.multilabel_synth import (
    BASE_PROFILES,
    BRAIN_HU,
    CENTRES_2D,
    CENTRES_3D,
    REGIONS,
    MultilabelProfile,
    make_case,
    synth_multilabel,
)
from tclearn.learning.samples import pooled
from tclearn.learning.train import TrainConfig, train_increment
from tclearn.learning.volumes import Intensity, IntensityKind


@pytest.fixture(scope="module")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("multilabel")
    synth_multilabel(root, hospitals=3, train=6, test=2, global_size=3, seed=3)
    return root


# --- reader -----------------------------------------------------------------------------------------


def folder(root: Path, csv_text: str, images: tuple[str, ...] = ("a", "b")) -> Path:
    (root / "images").mkdir(parents=True)
    for name in images:
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "images" / f"{name}.png")
    (root / "labels.csv").write_text(csv_text)
    return root


def test_reads_rows_in_image_order_with_or_without_suffix(tmp_path: Path) -> None:
    table = read_label_table(folder(tmp_path, "name,x,y\nb.png,1,0\na,0,1\n\n"))
    assert table.names == ("a.png", "b.png")
    assert table.labels == ("x", "y")
    assert table.targets.dtype == np.float32
    assert table.targets.tolist() == [[0.0, 1.0], [1.0, 0.0]]


def test_reads_the_synthetic_folder(volumes: Path) -> None:
    table = read_label_table(volumes / "hospital-1" / "train")
    assert table.labels == REGIONS
    assert table.names[0] == "train-0000.nii.gz"
    assert table.targets.shape == (6, len(REGIONS))
    first = (volumes / "hospital-1" / "train" / "labels.csv").read_text().splitlines()[1].split(",")
    assert table.targets[0].tolist() == [float(v) for v in first[1:]]


@pytest.mark.parametrize(
    ("csv_text", "images", "message"),
    [
        ("name,x\na,1\nb,0\nc,1\n", ("a", "b"), r"line 4: no image 'c'"),
        ("name,x\na,1\n", ("a", "b"), r"image '.*b\.png' has no row"),
        ("name,x,y\na,1,0\nb,2,0\n", ("a", "b"), r"line 3: column 'x' holds '2'"),
        ("name,x,y\na,1,0\nb,0,\n", ("a", "b"), r"line 3: column 'y' holds ''"),
        ("name,x\na,yes\nb,0\n", ("a", "b"), r"line 2: column 'x' holds 'yes'"),
        ("name,x\na,1\nb,0\na.png,1\n", ("a", "b"), r"line 4: name 'a' is already on line 2"),
        ("name\na\nb\n", ("a", "b"), "no label columns"),
        ("file,x\na,1\nb,0\n", ("a", "b"), "no 'name' column"),
        ("name,x,x\na,1,1\nb,0,0\n", ("a", "b"), "repeats column"),
        ("name,x\na,1,0\nb,0\n", ("a", "b"), r"line 2: 3 values for 2 columns"),
        ("name,x\n", ("a", "b"), "no rows"),
        ("", ("a", "b"), "is empty"),
    ],
)
def test_bad_label_tables_name_the_file_and_line(tmp_path: Path, csv_text: str, images: tuple, message: str) -> None:
    with pytest.raises(DataError, match=message) as caught:
        read_label_table(folder(tmp_path, csv_text, images))
    assert "labels.csv" in str(caught.value) or "images" in str(caught.value)


def test_two_images_of_one_name_are_refused(tmp_path: Path) -> None:
    root = folder(tmp_path, "name,x\na,1\n", ("a",))
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4)), root / "images" / "a.nii.gz")
    with pytest.raises(DataError, match="same name 'a'"):
        read_label_table(root)


def test_a_folder_without_labels_csv(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match=r"no labels\.csv"):
        read_label_table(tmp_path)


# --- generator --------------------------------------------------------------------------------------


def test_layout_and_description(volumes: Path) -> None:
    described = json.loads((volumes / "coalition.json").read_text())
    assert described["labels"] == list(REGIONS) and described["dims"] == 3 and described["size"] == [32] * 3
    assert set(described["hospitals"]) == {"hospital-1", "hospital-2", "hospital-3"}
    for split, count in (("hospital-2/train", 6), ("hospital-3/test", 2), ("global", 3)):
        assert len(read_label_table(volumes / split).names) == count
    assert read_label_table(volumes / "global").names[2] == "g-0002-h3.nii.gz"


def test_volumes_are_int16_nifti_in_hounsfield_units(volumes: Path) -> None:
    image = nib.load(volumes / "hospital-1" / "train" / "images" / "train-0000.nii.gz")
    voxels = np.asarray(image.dataobj)
    assert voxels.dtype == np.int16 and voxels.shape == (32, 32, 32)
    assert image.header.get_zooms() == (7.0, 7.0, 7.0)
    assert voxels.min() < -950  # air
    assert voxels.max() > 700  # skull
    brain = voxels[(voxels > -100) & (voxels < 200)]
    assert abs(float(np.median(brain)) - BRAIN_HU) < 3  # hospital-1: no offset


def test_scanner_offsets_differ_as_configured(volumes: Path) -> None:
    def median_brain(hospital: str) -> float:
        """The median of the head's core, far from the skull (blur spreads bone into the brain's rim)."""
        files = sorted((volumes / hospital / "train" / "images").iterdir())
        return float(np.median([np.asarray(nib.load(f).dataobj)[13:19, 13:19, 13:19] for f in files]))

    offsets = [p.offset_hu for p in BASE_PROFILES]
    medians = [median_brain(f"hospital-{i}") for i in (1, 2, 3)]
    for offset, median in zip(offsets, medians, strict=True):
        assert median == pytest.approx(BRAIN_HU + offset, abs=3)


def test_same_seed_same_files_other_seed_other_files(tmp_path: Path) -> None:
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        for dims in (2, 3):
            synth_multilabel(tmp_path / name / str(dims), 1, 2, 1, 1, size=24, dims=dims, seed=seed)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert {f.suffix for f in files} == {".png", ".gz", ".csv", ".json"}
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    assert any((tmp_path / "a" / f).read_bytes() != (tmp_path / "c" / f).read_bytes() for f in files)


def test_two_dimensional_slices_are_windowed_pngs(tmp_path: Path) -> None:
    synth_multilabel(tmp_path, 1, 2, 1, 1, dims=2, seed=0)
    picture = np.asarray(Image.open(tmp_path / "global" / "images" / "g-0000-h1.png"))
    assert picture.dtype == np.uint8 and picture.shape == (64, 64)
    assert picture.min() == 0 and picture.max() == 255  # air and bone clipped by the brain window
    assert read_label_table(tmp_path / "global").targets.shape == (1, len(REGIONS))


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("region", range(len(REGIONS)))
def test_each_label_puts_its_finding_in_its_own_region(dims: int, region: int) -> None:
    """With one region certain and the others never, on a noiseless scanner, the only voxels that differ from
    the brain lie around that region's centre: closer to it than to any other region's."""
    prevalence = tuple(1.0 if k == region else 0.0 for k in range(len(REGIONS)))
    profile = MultilabelProfile(prevalence, hyperdense_share=1.0, noise_hu=0.0)
    size = 32 if dims == 3 else 64
    hu, labels = make_case(profile, size, dims, np.random.default_rng(region))
    assert labels.tolist() == list(prevalence)
    changed = np.argwhere((hu > BRAIN_HU + 1) & (hu < 400))
    assert len(changed) > 0
    spot = changed.mean(axis=0)
    head = np.array([0.40, 0.44, 0.36][-dims:]) * size
    brain = head - max(1.0, 0.05 * size)
    centres = (size - 1) / 2 + np.asarray(CENTRES_3D if dims == 3 else CENTRES_2D) * brain
    assert int(np.argmin(np.linalg.norm(centres - spot, axis=1))) == region


def test_hospitals_see_different_prevalences() -> None:
    def prevalence(index: int) -> np.ndarray:
        rng = np.random.default_rng(index)
        return np.mean([make_case(BASE_PROFILES[index], 24, 2, rng)[1] for _ in range(200)], axis=0)

    stroke_unit, general = prevalence(0), prevalence(1)
    assert stroke_unit[4:].mean() > 0.3 > stroke_unit[:4].mean()  # cortical findings
    assert general[:4].mean() > 0.3 > general[4:].mean()  # deep findings


@pytest.mark.parametrize("bad", [{"dims": 4}, {"size": 16}, {"hospitals": 0}, {"train": 0}, {"dims": 2, "size": 20}])
def test_bad_arguments(tmp_path: Path, bad: dict) -> None:
    with pytest.raises(ConfigError):
        synth_multilabel(tmp_path, **bad)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"prevalence": (0.5,) * 9}, "prevalence"),
        ({"prevalence": (1.5,) * 10}, "prevalence"),
        ({"radius": (0.1, 0.05)}, "radius"),
        ({"hypodense_hu": -5.0}, "magnitudes"),
        ({"noise_hu": -1.0}, "noise_hu"),
    ],
)
def test_bad_profile(bad: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        MultilabelProfile(**bad)


def test_cli_writes_a_multilabel_coalition(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["--hospitals", "2", "--train", "2", "--test", "1", "--global", "2", "--size", "24"]
    result = runner.invoke(
        data_app, ["synth", "--out", str(tmp_path / "ml"), *args, "--task", "multilabel", "--dims", "3"]
    )
    assert result.exit_code == 0, result.output
    assert len(read_label_table(tmp_path / "ml" / "hospital-2" / "train").names) == 2
    sites = json.loads((tmp_path / "ml" / "coalition.json").read_text())["sites"]
    assert sites["hospital-1"] == {"modality": "ct", "dims": 3, "units": "HU", "window": [-20.0, 100.0]}
    refused = runner.invoke(
        data_app, ["synth", "--out", str(tmp_path / "t"), *args, "--task", "multilabel", "--tabular"]
    )
    assert refused.exit_code == 1
    assert "--tabular and --task multilabel exclude each other" in refused.output
    assert not (tmp_path / "t").exists()


# --- metrics ----------------------------------------------------------------------------------------


def test_metrics_by_hand() -> None:
    probs = torch.tensor([[0.9, 0.2], [0.4, 0.6], [0.1, 0.7], [0.6, 0.1]])
    truth = torch.tensor([[1, 0], [1, 1], [0, 0], [0, 1]])
    metrics = multilabel_metrics(probs, truth, ["a", "b"])
    # a: positives 0.9, 0.4 against negatives 0.1, 0.6 -> 3 of 4 pairs ordered; predicted >= 0.5: rows 0 and 3.
    # b: positives 0.6, 0.1 against negatives 0.2, 0.7 -> 1 of 4; predicted: rows 1 and 2.
    expected = {
        "auc/a": 0.75, "recall/a": 0.5, "precision/a": 0.5,
        "auc/b": 0.25, "recall/b": 0.5, "precision/b": 0.5,
        "auc": 0.5, "recall": 0.5, "precision": 0.5,
    }  # fmt: skip
    assert metrics == pytest.approx(expected)


def test_ties_count_half_and_numpy_inputs_work() -> None:
    metrics = multilabel_metrics(np.full((4, 1), 0.5), np.array([[1], [0], [1], [0]]), ["x"])
    assert metrics["auc"] == 0.5
    assert metrics["recall/x"] == 1.0 and metrics["precision/x"] == 0.5


def test_undefined_values_are_nan_and_left_out_of_the_means() -> None:
    probs = torch.tensor([[0.8, 0.9, 0.1], [0.2, 0.7, 0.2], [0.3, 0.8, 0.3]])
    truth = torch.tensor([[1, 0, 1], [0, 0, 1], [0, 0, 1]])
    metrics = multilabel_metrics(probs, truth, ["ok", "none", "all"])
    assert metrics["auc/ok"] == 1.0
    assert math.isnan(metrics["auc/none"]) and math.isnan(metrics["auc/all"])
    assert metrics["auc"] == 1.0  # the mean over the labels whose truth holds both classes
    assert math.isnan(metrics["recall/none"])  # no positive case
    assert math.isnan(metrics["precision/all"])  # nothing predicted positive
    assert metrics["recall/all"] == 0.0
    assert metrics["recall"] == pytest.approx(0.5)  # ok 1.0, all 0.0
    assert metrics["precision"] == pytest.approx(0.5)  # ok 1.0, none 0.0


def test_no_label_with_both_classes_gives_a_nan_headline() -> None:
    metrics = multilabel_metrics(torch.tensor([[0.2, 0.9]]), torch.tensor([[0, 1]]), ["a", "b"])
    assert math.isnan(metrics["auc"])
    assert metrics["recall"] == 1.0 and metrics["precision"] == 1.0


@pytest.mark.parametrize(
    ("probs", "truth", "labels", "message"),
    [
        (torch.zeros(2, 2), torch.zeros(2, 3), ["a", "b"], "differ in shape"),
        (torch.zeros(2, 2), torch.zeros(2, 2), ["a"], "2 label columns but 1 label names"),
        (torch.zeros(2, 1), torch.tensor([[0.5], [1.0]]), ["a"], "only 0 and 1"),
        (torch.tensor([[1.5], [0.0]]), torch.zeros(2, 1), ["a"], r"\[0, 1\]"),
        (torch.tensor([[math.nan], [0.0]]), torch.zeros(2, 1), ["a"], "NaN"),
        (torch.zeros(0, 1), torch.zeros(0, 1), ["a"], "non-empty"),
        (torch.zeros(3), torch.zeros(3), ["a"], "non-empty"),
    ],
)
def test_bad_metric_inputs(probs: torch.Tensor, truth: torch.Tensor, labels: list, message: str) -> None:
    with pytest.raises(DataError, match=message):
        multilabel_metrics(probs, truth, labels)


# --- training and evaluation ------------------------------------------------------------------------


def test_headline_is_the_mean_auc() -> None:
    assert headline_metric(Task.MULTILABEL) == "auc"


def test_a_densenet_learns_the_two_dimensional_task(tmp_path: Path) -> None:
    """Trained on the three hospitals' 96 slices for 4 epochs, the mean AUC on G (48 slices) rises well above
    chance. Measured (seeds 0, 1, 2): untrained 0.47 / 0.59 / 0.54, trained 0.69 / 0.67 / 0.68."""
    synth_multilabel(tmp_path, hospitals=3, train=32, test=1, global_size=48, dims=2, seed=0)
    train = pooled([load_dataset(tmp_path / f"hospital-{i}" / "train", Task.MULTILABEL) for i in (1, 2, 3)])
    test_set = load_dataset(tmp_path / "global", Task.MULTILABEL)
    assert test_set.classes == REGIONS and tuple(test_set.targets.shape) == (48, len(REGIONS))
    torch.manual_seed(0)
    model = build_model(ModelConfig("densenet121", out_channels=len(REGIONS), multilabel=True))  # type: ignore[arg-type]
    before = evaluate(model, test_set).score
    increment = train_increment(model, train, TrainConfig(epochs=4, batch_size=8, lr=3e-3, seed=0))
    model.load_state_dict(increment.weights)
    after = evaluate(model, test_set)
    assert after.score >= 0.62
    assert after.score >= before + 0.1
    assert set(after.metrics) >= {"auc", "recall", "precision", *(f"auc/{r}" for r in REGIONS)}


def test_volumes_train_and_score_from_disk_through_a_ct_window(tmp_path: Path) -> None:
    """The 3-D path: `FileSamples` read int16 HU volumes through the site's CT window, train and score."""
    synth_multilabel(tmp_path, hospitals=2, train=4, test=1, global_size=8, size=32, dims=3, seed=1)
    window = Intensity(IntensityKind.CT, (-20.0, 100.0))
    train = multilabel_samples(tmp_path / "hospital-1" / "train", window)
    x, y = train.dataset()[0]
    assert tuple(x.shape) == (1, 32, 32, 32) and float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert y.tolist() == read_label_table(tmp_path / "hospital-1" / "train").targets[0].tolist()
    config = ModelConfig("densenet121", spatial_dims=3, out_channels=len(REGIONS), multilabel=True)  # type: ignore[arg-type]
    model = build_model(config)
    increment = train_increment(model, train, TrainConfig(epochs=1, batch_size=4, seed=0))
    assert increment.facts.steps == 1
    model.load_state_dict(increment.weights)
    scored = evaluate(model, multilabel_samples(tmp_path / "global", window))
    assert 0.0 <= scored.score <= 1.0 and scored.samples == 8


def test_a_set_where_no_label_has_both_classes_cannot_be_scored(tmp_path: Path) -> None:
    synth_multilabel(tmp_path, hospitals=1, train=1, test=1, global_size=1, size=32, dims=2, seed=0)
    model = build_model(ModelConfig("densenet121", out_channels=len(REGIONS), multilabel=True))  # type: ignore[arg-type]
    with pytest.raises(DataError, match="no label of these 1 samples has both"):
        evaluate(model, load_dataset(tmp_path / "global", Task.MULTILABEL))


def test_mixed_shapes_are_refused_before_reading(tmp_path: Path) -> None:
    root = folder(tmp_path, "name,x\na,1\nb,0\n", ("a",))
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(root / "images" / "b.png")
    with pytest.raises(DataError, match=r"b\.png' has shape \(1, 9, 9\)"):
        multilabel_samples(root)


def test_cli_trains_and_evaluates_a_multilabel_model(tmp_path: Path) -> None:
    synth_multilabel(tmp_path / "d", hospitals=1, train=8, test=1, global_size=4, size=32, dims=2, seed=0)
    runner = CliRunner()
    model = tmp_path / "m.pt"
    args = ["--data", str(tmp_path / "d" / "hospital-1" / "train"), "--task", "multilabel", "--out", str(model)]
    trained = runner.invoke(train_app, ["train", *args, "--arch", "densenet121", "--epochs", "1"])
    assert trained.exit_code == 0, trained.output
    assert json.loads(model.with_suffix(".json").read_text())["multilabel"] is True
    scored = runner.invoke(
        train_app, ["evaluate", "--model", str(model), "--data", str(tmp_path / "d" / "global"), "--task", "multilabel"]
    )
    assert scored.exit_code == 0, scored.output
    assert set(json.loads(scored.output)) >= {"score", "auc", "auc/caudate", "recall/m6"}
