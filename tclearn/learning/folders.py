"""The entry points from a path to a data set: a CSV table, or a folder read for its task.

`open_folder` is what training and evaluation use: segmentation and multi-label folders read from disk as
they are used (`FileSamples`, through an `Intensity` and a cache budget), class folders and tables in memory.
`load_dataset` stacks any of them in memory (small 2-D sets, tests). This module sits above the task modules
(`data.py` for segmentation, classification and tables, `multilabel.py` for `images/` + `labels.csv`,
`volumes.py` for the disk-backed sets), which each read their own layout; nothing below imports it.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from tclearn.errors import DataError
from tclearn.learning.data import ImageData, Task, load_classification, load_csv, load_segmentation
from tclearn.learning.multilabel import load_multilabel, multilabel_samples
from tclearn.learning.samples import Samples
from tclearn.learning.volumes import DEFAULT_CACHE_BYTES, Intensity, segmentation_samples


def load_dataset(
    path: str | Path, task: Task | str = Task.SEGMENTATION, size: Sequence[int] | None = None
) -> ImageData:
    """A CSV file, or a folder read for `task` (segmentation, classification or multilabel)."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return load_csv(path)
    match Task(task):
        case Task.SEGMENTATION:
            return load_segmentation(path, size)
        case Task.MULTILABEL:
            return load_multilabel(path, size)
        case _:
            return load_classification(path, size)


def open_folder(
    path: str | Path,
    task: Task | str = Task.SEGMENTATION,
    intensity: Intensity | None = None,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
) -> Samples:
    """A data set to train or evaluate on: image folders from disk (checked first), class folders and CSV
    tables in memory."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return load_csv(path)
    match Task(task):
        case Task.SEGMENTATION:
            return segmentation_samples(path, intensity, cache_bytes)
        case Task.MULTILABEL:
            return multilabel_samples(path, intensity, cache_bytes)
        case _:
            return load_classification(path)


PATIENTS_FILE = "patients.csv"


def read_patients(root: str | Path, names: Sequence[str]) -> tuple[str, ...] | None:
    """Each item's patient, in the order of `names`, from `ROOT/patients.csv` (columns `image,patient`, the image by
    its name without suffix); None when the folder has no such file (each image is then its own unit)."""
    path = Path(root) / PATIENTS_FILE
    if not path.is_file():
        return None
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and not {"image", "patient"} <= set(rows[0]):
        raise DataError(f"{path} must have the columns image,patient; it has {','.join(rows[0])}")
    patient = {r["image"].strip(): r["patient"].strip() for r in rows}
    missing = [n for n in names if not patient.get(n)]
    if missing:
        raise DataError(
            f"{path}: no patient for image {missing[0]!r}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    return tuple(patient[n] for n in names)
