"""`tclearn active rank` and `tclearn active add` on a committed lineage (embedded chain, real vault): the ranking,
its thumbnails and the loop's record; every bad input one clear error with nothing half-written."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import Result

from tclearn.cli.app import app
from tclearn.coalition.build import Images
from tclearn.coalition.context import Coalition
from tclearn.coalition.member import increment
from tclearn.errors import IntegrityError
from tclearn.learning.active import committee_chosen, file_sha256, random_scores
from tclearn.learning.choices import DEFAULT_DENSITY
from tclearn.learning.coding import coded_ratio
from tclearn.learning.compress import compress
from tclearn.site import config as config_module
from tclearn.site import open as open_module
from tclearn.site.open import Site
from tests.site.lineage import founded, grow, site_of
from tests.test_cli import runner

POOL = 6


@pytest.fixture(scope="module")
def lineage(tmp_path_factory: pytest.TempPathFactory) -> tuple[Coalition, Path]:
    folder = tmp_path_factory.mktemp("active")
    return grow(founded(folder)), folder


@pytest.fixture
def pool(lineage: tuple[Coalition, Path], tmp_path: Path) -> Path:
    """Unlabelled images: hospital 3's training images (their masks play the expert's annotations)."""
    _, folder = lineage
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    for image in sorted((folder / "data" / "hospital-3" / "train" / "images").iterdir())[:POOL]:
        shutil.copy(image, unlabelled / image.name)
    return unlabelled


@pytest.fixture
def site(lineage: tuple[Coalition, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    """The CLI opens hospital 3's site over the lineage (no member.toml, no chain connection of its own)."""
    co, folder = lineage
    opened = site_of(co, folder)
    monkeypatch.setattr(config_module, "load_site_config", lambda *_a, **_k: opened.config)
    monkeypatch.setattr(open_module, "open_site", lambda _config: opened)
    yield opened


def rank(*args: str) -> Result:
    return runner.invoke(app, ["active", "rank", *args])


def test_the_committee_ranks_the_folder(site: Site, pool: Path, tmp_path: Path) -> None:
    out = tmp_path / "ranking"
    done = rank("--unlabelled", str(pool), "--budget", "2", "--out", str(out), "--json")
    assert done.exit_code == 0, done.output
    ranking = json.loads(done.output)
    assert ranking == json.loads((out / "ranking.json").read_text())
    assert [m["model_id"] for m in ranking["committee"]] == [3, 1]
    assert ranking["method"] == "committee" and ranking["measure"] == "entropy" and ranking["budget"] == 2
    assert ranking["density"] == DEFAULT_DENSITY
    rows = ranking["ranked"]
    assert [r["rank"] for r in rows] == list(range(1, POOL + 1))
    assert [r["chosen"] for r in rows] == [True, True] + [False] * (POOL - 2)
    assert sorted(r["name"] for r in rows) == sorted(p.name for p in pool.iterdir())
    assert all(0.0 <= r["score"] <= 1.0 for r in rows)
    assert all(r["sha256"] == file_sha256(pool / r["name"]) for r in rows)
    for row in rows:
        with Image.open(out / row["thumbnail"]) as picture:
            assert picture.mode == "RGB" and picture.size == (256, 256)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ranking")]  # no staging folder left


def test_a_percentage_budget_and_the_text_output(site: Site, pool: Path, tmp_path: Path) -> None:
    args = ("--budget", "50%", "--measure", "dice", "--density", "0")
    done = rank("--unlabelled", str(pool), *args, "--out", str(tmp_path / "r"))
    assert done.exit_code == 0, done.output
    ranking = json.loads((tmp_path / "r" / "ranking.json").read_text())
    assert ranking["budget"] == POOL // 2 and ranking["measure"] == "dice" and ranking["density"] == 0.0
    assert "ranked by committee (models 3, 1)" in done.output


def test_tta_uses_the_head_alone(site: Site, pool: Path, tmp_path: Path) -> None:
    done = rank("--unlabelled", str(pool), "--budget", "1", "--method", "tta", "--out", str(tmp_path / "r"), "--json")
    assert done.exit_code == 0, done.output
    assert [m["model_id"] for m in json.loads(done.output)["committee"]] == [3]


def test_random_is_seeded(site: Site, pool: Path, tmp_path: Path) -> None:
    def order(seed: int, name: str) -> list[str]:
        args = ("--budget", "1", "--method", "random", "--seed", str(seed))
        done = rank("--unlabelled", str(pool), *args, "--out", str(tmp_path / name), "--json")
        assert done.exit_code == 0, done.output
        ranking = json.loads(done.output)
        assert ranking["density"] == ranking["diversity"] == 0  # the plain baseline, whatever the defaults
        return [r["name"] for r in ranking["ranked"]]

    assert order(1, "a") == order(1, "b") != order(2, "c")
    names = sorted(p.name for p in pool.iterdir())
    drawn = random_scores(len(names), 1)
    assert order(1, "d") == [names[i] for i in np.argsort(-np.asarray(drawn), kind="stable")]


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (("--budget", "7"), 1, "budget 7 must be between 1 and the 6 images"),
        (("--budget", "0"), 1, "budget 0 must be between 1"),
        (("--budget", "lots"), 1, "budget 'lots' must be a count"),
        (("--budget", "2", "--method", "vote"), 2, "'vote' is not one of"),
        (("--budget", "2", "--committee", "1"), 1, "a committee has at least 2 models, got 1"),
        (("--budget", "2", "--method", "dropout"), 1, "the model has no dropout layer"),
        (("--budget", "2", "--density", "-1"), 2, "Invalid value for '--density'"),
    ],
)
def test_bad_input_is_one_clear_error(
    site: Site, pool: Path, tmp_path: Path, args: tuple[str, ...], status: int, message: str
) -> None:
    done = rank("--unlabelled", str(pool), *args, "--out", str(tmp_path / "r"))
    assert done.exit_code == status and message in " ".join(done.output.split()), done.output
    assert "Traceback" not in done.output and not (tmp_path / "r").exists()


def test_an_empty_or_missing_folder_is_refused(site: Site, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    empty = rank("--unlabelled", str(tmp_path / "empty"), "--budget", "1", "--out", str(tmp_path / "r"))
    assert empty.exit_code == 1 and "holds no images" in empty.output
    missing = rank("--unlabelled", str(tmp_path / "nowhere"), "--budget", "1", "--out", str(tmp_path / "r"))
    assert missing.exit_code == 1 and "does not exist" in missing.output
    assert not (tmp_path / "r").exists()


def test_an_unreadable_image_is_named_and_nothing_written(site: Site, pool: Path, tmp_path: Path) -> None:
    (pool / "broken.png").write_bytes(b"not a png")
    done = rank("--unlabelled", str(pool), "--budget", "1", "--out", str(tmp_path / "r"))
    assert done.exit_code == 1 and "broken.png" in done.output
    assert not (tmp_path / "r").exists() and not list(tmp_path.glob(".r.*"))


def test_an_existing_ranking_is_not_overwritten(site: Site, pool: Path, tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    done = rank("--unlabelled", str(pool), "--budget", "1", "--out", str(tmp_path / "r"))
    assert done.exit_code == 1 and "exists; name another --out" in done.output


def test_fewer_than_two_verifiable_models(
    site: Site, pool: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = site.coalition.backend
    real_open = type(backend).open
    first = site.coalition.client.get_model(1, with_uri=False).model_hash.hex()

    def tampered(self: object, reader: object, model_hash: str) -> object:
        if model_hash == first:
            raise IntegrityError("blob hash mismatch")
        return real_open(backend, reader, model_hash)  # type: ignore[arg-type]

    monkeypatch.setattr(type(backend), "open", tampered)
    done = rank("--unlabelled", str(pool), "--budget", "1", "--out", str(tmp_path / "r"))
    assert done.exit_code == 1 and "holds 1 that verify" in " ".join(done.output.split())
    assert not (tmp_path / "r").exists()


# --- the loop closes: tclearn active add ---


@pytest.fixture
def ranked(site: Site, pool: Path, tmp_path: Path) -> Path:
    out = tmp_path / "ranking"
    assert rank("--unlabelled", str(pool), "--budget", "2", "--out", str(out)).exit_code == 0
    return out / "ranking.json"


@pytest.fixture
def train(lineage: tuple[Coalition, Path], tmp_path: Path) -> Path:
    _, folder = lineage
    target = tmp_path / "train"
    shutil.copytree(folder / "data" / "hospital-3" / "test", target)
    return target


def masks_of(lineage: tuple[Coalition, Path]) -> Path:
    return lineage[1] / "data" / "hospital-3" / "train" / "masks"


def add(ranking: Path, masks: Path, train: Path) -> Result:
    return runner.invoke(app, ["active", "add", str(ranking), "--masks", str(masks), "--data", str(train), "--json"])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_add_copies_the_chosen_and_records_them(
    ranked: Path, train: Path, lineage: tuple[Coalition, Path], pool: Path
) -> None:
    before = len(list((train / "images").iterdir()))
    done = add(ranked, masks_of(lineage), train)
    assert done.exit_code == 0, done.output
    chosen = [r for r in json.loads(ranked.read_text())["ranked"] if r["chosen"]]
    assert json.loads(done.output)["added"] == [r["name"] for r in chosen]
    assert len(list((train / "images").iterdir())) == before + 2
    for row in chosen:
        assert (train / "images" / row["name"]).read_bytes() == (pool / row["name"]).read_bytes()
        assert (train / "masks" / row["name"]).is_file()
    assert committee_chosen(train) == 2
    again = add(ranked, masks_of(lineage), train)  # the same picks again: a name collision, nothing changes
    assert again.exit_code == 1 and "is already in the training folder" in again.output
    assert committee_chosen(train) == 2


@pytest.mark.parametrize("fault", ["missing_mask", "collision", "shape"])
def test_add_is_all_or_nothing(
    ranked: Path, train: Path, lineage: tuple[Coalition, Path], tmp_path: Path, fault: str
) -> None:
    chosen = [r["name"] for r in json.loads(ranked.read_text())["ranked"] if r["chosen"]]
    masks = tmp_path / "masks"
    shutil.copytree(masks_of(lineage), masks)
    last = chosen[-1]
    if fault == "missing_mask":
        (masks / last).unlink()
        expected = f"no mask for image {str(Path(json.loads(ranked.read_text())['unlabelled']) / last)!r}"
    elif fault == "collision":
        shutil.copy(masks / last, train / "images" / last)
        expected = "is already in the training folder"
    else:
        Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(masks / last)
        expected = "does not match the shape"
    before = snapshot(train)
    done = add(ranked, masks, train)
    assert done.exit_code == 1 and expected in " ".join(done.output.split()), done.output
    assert snapshot(train) == before and not (train / "committee.json").exists()
    assert not [p for p in train.parent.iterdir() if p.name.startswith(".train")]


def running_site(site: Site, data: Path) -> Site:
    """A site like `site` (its own hospital record) reading `data`, a hospital folder whose training images are not
    the pool's: hospital 3's test images and G's."""
    for part in ("train", "test"):
        shutil.copytree(Path(site.config.data) / "test", data / part)
    for sub in ("images", "masks"):
        shutil.copytree(Path(site.config.global_test) / sub, data / "train" / sub, dirs_exist_ok=True)
    hospital = replace(site.hospital)  # the module's lineage keeps its own hospital untouched
    return Site(site.config.model_copy(update={"data": data}), site.coalition, hospital, form=Images())


def test_the_next_increment_declares_the_committees_picks(
    site: Site, ranked: Path, lineage: tuple[Coalition, Path], tmp_path: Path
) -> None:
    """The loop closes: picks added to a running site's training folder join its next increment, whose metadata
    counts them."""
    co, _ = lineage
    running = running_site(site, tmp_path / "hospital")
    assert running.reread() and running.hospital.manifest.committee_chosen == 0  # the folder it now reads
    train_set = running.hospital.train
    before = len(train_set)
    assert not running.reread() and running.hospital.train is train_set  # unchanged: the site keeps what it has
    assert add(ranked, masks_of(lineage), Path(running.config.data) / "train").exit_code == 0
    assert running.reread()
    assert running.hospital.manifest.committee_chosen == 2
    assert len(running.hospital.train) == before + 2
    _, metadata = increment(co, running.hospital, co.client.head(), None, None)
    assert metadata.data is not None and metadata.data.committee_chosen == 2
    assert metadata.data.manifest_sha256 == running.hospital.manifest.digest != site.hospital.manifest.digest


def test_an_increment_declares_its_images_coding(site: Site, lineage: tuple[Coalition, Path], tmp_path: Path) -> None:
    co, _ = lineage
    running = running_site(site, tmp_path / "hospital")
    _, plain = increment(co, running.hospital, co.client.head(), None, None)
    assert plain.data is not None and plain.data.compression is None
    data = Path(running.config.data)
    compress(data / "train", tmp_path / "coded", 10)
    shutil.rmtree(data / "train")
    shutil.move(tmp_path / "coded", data / "train")
    assert running.reread()
    images = len(list((data / "train" / "images").iterdir()))
    _, coded = increment(co, running.hospital, co.client.head(), None, None)
    assert coded.data is not None and coded.data.compression is not None
    assert coded.data.compression.coded == coded.data.compression.lossy == images
    ratios = [coded_ratio(f) for f in (data / "train" / "images").iterdir()]  # 32x32 pictures: headers weigh
    assert coded.data.compression.max_ratio == round(max(ratios), 3) > 1
