"""Multi-label classification: every image is scored 0/1 on each of K labels (seed 003: ten brain regions
of one non-contrast CT, as the ASPECTS score reads them).

Layout: `ROOT/images/<name>.<ext>` (NIfTI volumes or 2-D pictures) and `ROOT/labels.csv` with a `name`
column (the image's name with or without its suffix) and one 0/1 column per label, the column header being
the label's name. `read_label_table` checks that rows and images match one to one before anything is read.

`load_multilabel` holds a folder in memory (an `ImageData`: 2-D pictures, small volumes);
`multilabel_samples` reads it from disk as it is used (a `FileSamples`: volumes, through the site's
`Intensity`, e.g. a CT window in HU). `multilabel_metrics` is pure: per-label AUC, recall and precision and
their means, on plain tensors.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.metrics import compute_roc_auc

from tclearn.errors import DataError, NotFoundError
from tclearn.learning.data import ImageData, Task, list_images, read_images, stem
from tclearn.learning.scan import image_shape
from tclearn.learning.volumes import DEFAULT_CACHE_BYTES, FileItem, FileSamples, Intensity

LABELS_CSV = "labels.csv"
NAME_COLUMN = "name"


@dataclass(frozen=True)
class LabelTable:
    """The images of a multi-label folder and their targets: `targets[i, k]` is 1.0 when image `files[i]`
    holds label `labels[k]`, else 0.0 (float32, `(N, K)`)."""

    files: tuple[Path, ...]
    labels: tuple[str, ...]
    targets: np.ndarray

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.files)


def _binary(value: str | None, path: Path, line: int, column: str) -> float:
    try:
        number = float(value or "")
    except ValueError:
        number = math.nan
    if number not in (0.0, 1.0):
        raise DataError(
            f"{str(path)!r} line {line}: column {column!r} holds {value!r}; every label must be 0 or 1",
            path=str(path),
            line=line,
        )
    return number


def _header(path: Path, fields: Sequence[str] | None) -> tuple[str, ...]:
    """The label columns of `labels.csv`, after checking its header."""
    if not fields:
        raise DataError(f"{str(path)!r} is empty; expected a header with {NAME_COLUMN!r} and label columns")
    columns = [f.strip() for f in fields]
    if NAME_COLUMN not in columns:
        raise DataError(f"{str(path)!r} has no {NAME_COLUMN!r} column; columns: {', '.join(columns)}", path=str(path))
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise DataError(f"{str(path)!r} repeats column(s) {', '.join(map(repr, repeated))}", path=str(path))
    labels = tuple(c for c in columns if c != NAME_COLUMN)
    if not labels:
        raise DataError(f"{str(path)!r} has no label columns besides {NAME_COLUMN!r}", path=str(path))
    if "" in labels:
        raise DataError(f"{str(path)!r} has a label column without a name", path=str(path))
    return labels


def _rows(path: Path) -> tuple[tuple[str, ...], dict[str, tuple[int, list[float]]]]:
    """Label names and, per image name (without suffix), its line number and 0/1 values."""
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        fields = next(reader, None)
        labels = _header(path, fields)
        columns = [f.strip() for f in fields or ()]
        rows: dict[str, tuple[int, list[float]]] = {}
        for line, cells in enumerate(reader, start=2):
            if not any(c.strip() for c in cells):
                continue  # a blank line, as editors leave at the end
            if len(cells) != len(columns):
                raise DataError(
                    f"{str(path)!r} line {line}: {len(cells)} values for {len(columns)} columns", path=str(path)
                )
            row = dict(zip(columns, (c.strip() for c in cells), strict=True))
            name = stem(Path(row[NAME_COLUMN]))
            if not name:
                raise DataError(f"{str(path)!r} line {line}: empty {NAME_COLUMN!r}", path=str(path), line=line)
            if name in rows:
                raise DataError(
                    f"{str(path)!r} line {line}: name {name!r} is already on line {rows[name][0]}",
                    path=str(path),
                    line=line,
                )
            rows[name] = (line, [_binary(row[label], path, line, label) for label in labels])
    if not rows:
        raise DataError(f"{str(path)!r} has a header but no rows", path=str(path))
    return labels, rows


def read_label_table(root: str | Path) -> LabelTable:
    """`ROOT/images` and `ROOT/labels.csv`, matched one to one by image name, in the images' sorted order."""
    root = Path(root)
    path = root / LABELS_CSV
    if not root.is_dir():
        raise NotFoundError(f"data folder {str(root)!r} does not exist")
    if not path.is_file():
        raise DataError(f"multi-label folder {str(root)!r} has no {LABELS_CSV}", path=str(root))
    labels, rows = _rows(path)
    files = list_images(root / "images")
    by_name: dict[str, Path] = {}
    for file in files:
        name = stem(file)
        if name in by_name:
            raise DataError(
                f"images {str(by_name[name])!r} and {str(file)!r} have the same name {name!r}", path=str(file)
            )
        if name not in rows:
            raise DataError(f"image {str(file)!r} has no row in {str(path)!r}", path=str(file))
        by_name[name] = file
    for name, (line, _values) in rows.items():
        if name not in by_name:
            raise DataError(
                f"{str(path)!r} line {line}: no image {name!r} in {str(root / 'images')!r}", path=str(path), line=line
            )
    targets = np.array([rows[stem(f)][1] for f in files], dtype=np.float32).reshape(len(files), len(labels))
    return LabelTable(tuple(files), labels, targets)


def load_multilabel(root: str | Path, size: Sequence[int] | None = None) -> ImageData:
    """A multi-label folder in memory: images `(N, C, *spatial)`, targets `(N, K)`, the labels as `classes`."""
    table = read_label_table(root)
    images = read_images(list(table.files), size)
    return ImageData(Task.MULTILABEL, images, torch.from_numpy(table.targets), table.names, table.labels)


def multilabel_samples(
    root: str | Path, intensity: Intensity | None = None, cache_bytes: int = DEFAULT_CACHE_BYTES
) -> FileSamples:
    """A multi-label folder read from disk as it is used; shapes come from the headers and must agree."""
    table = read_label_table(root)
    shapes = [image_shape(f) for f in table.files]
    for file, shape in zip(table.files, shapes, strict=True):
        if shape != shapes[0]:
            raise DataError(
                f"image {str(file)!r} has shape {shape} but {str(table.files[0])!r} has {shapes[0]}", path=str(file)
            )
    items = tuple(
        FileItem(file.name, file, tuple(float(v) for v in row), shape)
        for file, row, shape in zip(table.files, table.targets, shapes, strict=True)
    )
    return FileSamples(Task.MULTILABEL, items, intensity or Intensity(), cache_bytes, table.labels)


def write_label_table(path: Path, labels: Sequence[str], rows: Sequence[tuple[str, Sequence[int]]]) -> None:
    """`labels.csv`: a `name` column, then one 0/1 column per label."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([NAME_COLUMN, *labels])
        writer.writerows([name, *(int(v) for v in values)] for name, values in rows)


# --- metrics ----------------------------------------------------------------------------------------


def _matrix(values: torch.Tensor | np.ndarray, what: str) -> torch.Tensor:
    matrix = torch.as_tensor(values).detach().cpu().double()
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise DataError(f"{what} must be a non-empty (samples, labels) matrix, got shape {tuple(matrix.shape)}")
    if not bool(torch.isfinite(matrix).all()):
        raise DataError(f"{what} holds a NaN or infinite value")
    return matrix


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


def _mean(values: list[float]) -> float:
    defined = [v for v in values if not math.isnan(v)]
    return sum(defined) / len(defined) if defined else math.nan


def multilabel_metrics(
    probs: torch.Tensor | np.ndarray,
    truth: torch.Tensor | np.ndarray,
    labels: Sequence[str],
    threshold: float = 0.5,
) -> dict[str, float]:
    """Per label `auc/<label>`, `recall/<label>` and `precision/<label>`, and their macro means `auc`,
    `recall` and `precision`; a label is predicted where its probability is >= `threshold`.

    A value that is undefined on this set is NaN and left out of the mean: AUC when the label's truth holds
    one class only, recall when it has no positive case, precision when nothing is predicted positive. The
    headline `auc` is NaN when no label's truth holds both classes (and a mean is NaN when no label defines it).
    """
    p, y = _matrix(probs, "probabilities"), _matrix(truth, "truth")
    if p.shape != y.shape:
        raise DataError(f"probabilities {tuple(p.shape)} and truth {tuple(y.shape)} differ in shape")
    if p.shape[1] != len(labels):
        raise DataError(f"{p.shape[1]} label columns but {len(labels)} label names")
    if not bool(((y == 0) | (y == 1)).all()):
        raise DataError("truth must hold only 0 and 1")
    if not bool(((p >= 0) & (p <= 1)).all()):
        raise DataError("probabilities must lie in [0, 1]")
    predicted = p >= threshold
    positive = y == 1
    metrics: dict[str, float] = {}
    aucs, recalls, precisions = [], [], []
    for k, label in enumerate(labels):
        both = 0 < int(positive[:, k].sum()) < len(y)
        auc = float(compute_roc_auc(p[:, k], y[:, k])) if both else math.nan  # type: ignore[arg-type]
        tp = int((predicted[:, k] & positive[:, k]).sum())
        recall = _ratio(tp, int(positive[:, k].sum()))
        precision = _ratio(tp, int(predicted[:, k].sum()))
        metrics |= {f"auc/{label}": auc, f"recall/{label}": recall, f"precision/{label}": precision}
        aucs.append(auc)
        recalls.append(recall)
        precisions.append(precision)
    return {"auc": _mean(aucs), "recall": _mean(recalls), "precision": _mean(precisions), **metrics}
