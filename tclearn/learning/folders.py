"""The one entry point from a path to an in-memory data set: a CSV table, or a folder read for its task.

It sits above the task modules (`data.py` for segmentation, classification and tables, `multilabel.py` for
`images/` + `labels.csv`), which each read their own layout; nothing below imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tclearn.learning.data import ImageData, Task, load_classification, load_csv, load_segmentation
from tclearn.learning.multilabel import load_multilabel


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
