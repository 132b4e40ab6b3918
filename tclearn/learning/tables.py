"""Binary feature tables (variant C's data), read strictly: every mistake is one `DataError` naming the file,
the column and the CSV line (the header is line 1).

A table is a CSV file with a header: a label column (0 or 1; "0.0"/"1.0" too) and numeric feature columns.
A table that holds one class only is accepted (a screening site may see no case in its test set): its score
is then a recall or a specificity (`class_metric`), not an accuracy.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tclearn.errors import DataError, NotFoundError

if TYPE_CHECKING:
    from tclearn.learning.data import ImageData

SHOWN_ROWS = 5  # rows named in a message about unexpected labels

Fail = Callable[[str], DataError]  # a DataError naming the file
BINARY = ("0", "1")  # the classes of every binary table, present or not


@dataclass(frozen=True, eq=False)
class Table:
    """One binary table: feature columns in file order (or in G's order when read against G's columns)."""

    path: Path
    columns: tuple[str, ...]  # feature column names (the label column excluded)
    x: np.ndarray  # float64 (rows, features)
    y: np.ndarray  # float64 of 0.0/1.0, (rows,)
    lines: tuple[int, ...] = ()  # each row's CSV line number (header = line 1); 2, 3, ... when not given

    def row_lines(self) -> tuple[int, ...]:
        return self.lines or tuple(range(2, len(self.y) + 2))

    def samples(self) -> ImageData:
        """The table as a classification data set: float32 features, class indices into ("0", "1")."""
        import torch

        from tclearn.learning.data import ImageData, Task

        return ImageData(
            Task.CLASSIFICATION,
            torch.as_tensor(self.x, dtype=torch.float32),
            torch.as_tensor(self.y, dtype=torch.long),
            tuple(f"row{line}" for line in self.row_lines()),
            BINARY,
            self.columns,
        )


def class_metric(y: np.ndarray) -> str:
    """The score a set of 0/1 labels supports: accuracy with both classes, recall with only 1s, specificity
    with only 0s."""
    labels = np.asarray(y)
    if labels.size == 0:
        raise DataError("no labels: a score needs at least one row")
    positives, negatives = bool((labels == 1).any()), bool((labels == 0).any())
    if positives and negatives:
        return "accuracy"
    return "recall" if positives else "specificity"


def read_table(path: str | Path, label_column: str = "label", columns: Sequence[str] | None = None) -> Table:
    """A binary feature table; with `columns` (G's feature columns) its features are put in that order, and
    a table with other feature columns is refused."""
    path = Path(path)
    name = repr(str(path))
    if not path.is_file():
        raise NotFoundError(f"table {name} does not exist", path=str(path))

    def fail(message: str) -> DataError:
        return DataError(f"{name} {message}", path=str(path))

    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise fail(f"is not a UTF-8 text file: {exc}") from None
    header = _header(text)
    if header is None:
        raise fail("is empty: a table needs a header line and at least one row")
    order = _feature_order(header, label_column, columns, fail)
    li = header.index(label_column)
    quick = _quick(text, len(header), li)
    if quick is not None:
        x, lines = quick
        y = x[:, li].copy()
    else:  # something is wrong (or merely unusual, such as quoted cells): the slow path names it
        try:
            body = _records(text)[1:]
        except csv.Error as exc:
            raise fail(f"is not a CSV file: {exc}") from None
        lines = tuple(line for line, _ in body)
        rows = [row for _, row in body]
        for line, row in body:
            if len(row) != len(header):
                raise fail(f"line {line} has {len(row)} cells; the header has {len(header)} columns")
        y = _labels([row[li] for row in rows], lines, label_column, fail)
        x = _numbers(rows, lines, header, li, fail)
    if len(y) == 0:
        raise fail(f"has a header but no rows (columns: {', '.join(header)})")
    return Table(path, tuple(header[j] for j in order), x[:, order], y, lines)


def _records(text: str) -> list[tuple[int, list[str]]]:
    """The non-blank CSV records of `text`, each with its line number."""
    reader = csv.reader(io.StringIO(text, newline=""))
    return [(reader.line_num, row) for row in reader if row]


def _header(text: str) -> list[str] | None:
    """The first non-blank record's cells, stripped; None for a blank file."""
    for row in csv.reader(io.StringIO(text, newline="")):
        if row:
            return [c.strip() for c in row]
    return None


def _quick(text: str, width: int, label: int) -> tuple[np.ndarray, tuple[int, ...]] | None:
    """The whole table (label column included) and its rows' line numbers, by numpy's C parser, when it is
    plain (no quotes, every cell a finite number, labels 0/1); None otherwise: the slow path finds what is wrong."""
    if '"' in text:
        return None
    numbered = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line][1:]
    if not numbered:
        return np.zeros((0, width)), ()
    try:
        x = np.loadtxt([line for _, line in numbered], delimiter=",", comments=None, dtype=np.float64, ndmin=2)
    except ValueError:
        return None
    ok = x.shape == (len(numbered), width) and bool(np.isfinite(x).all())
    if ok and bool(np.isin(x[:, label], (0.0, 1.0)).all()):
        return x, tuple(n for n, _ in numbered)
    return None


def _feature_order(header: list[str], label_column: str, columns: Sequence[str] | None, fail: Fail) -> list[int]:
    """Indices of the feature columns in the header, in `columns`' order when given."""
    unnamed = [str(j + 1) for j, c in enumerate(header) if not c]
    if unnamed:
        raise fail(f"header has no name for column(s) {', '.join(unnamed)} (counted from 1)")
    seen: dict[str, int] = {}
    for c in header:
        seen[c] = seen.get(c, 0) + 1
    twice = [c for c, n in seen.items() if n > 1]
    if twice:
        raise fail(f"header names column(s) {', '.join(map(repr, twice))} more than once")
    if label_column not in seen:
        raise fail(f"has no label column {label_column!r}; its columns: {', '.join(header)}")
    features = [c for c in header if c != label_column]
    if not features:
        raise fail(f"has no feature column besides the label column {label_column!r}")
    if columns is None:
        return [header.index(c) for c in features]
    missing = [c for c in columns if c not in seen or c == label_column]
    extra = [c for c in features if c not in set(columns)]
    if missing or extra:
        parts = [
            f"missing {', '.join(map(repr, missing))}" if missing else "",
            f"extra {', '.join(map(repr, extra))}" if extra else "",
        ]
        raise fail(f"has other feature columns than G: {'; '.join(p for p in parts if p)}")
    return [header.index(c) for c in columns]


def _labels(cells: list[str], lines: tuple[int, ...], label_column: str, fail: Fail) -> np.ndarray:
    """The label column as 0.0/1.0; a message listing the values found when any other value is there."""
    values: dict[str, float | None] = {}
    for cell in set(cells):
        text = cell.strip()
        try:
            values[cell] = float(text)
        except ValueError:
            values[cell] = None
    for line, cell in zip(lines, cells, strict=True):
        if not cell.strip():
            raise fail(f"line {line}, column {label_column!r}: the label is missing")
    bad = {c for c, v in values.items() if v not in (0.0, 1.0)}
    if bad:

        def shown(cell: str) -> str:
            value = values[cell]
            return f"{value:g}" if value is not None else repr(cell.strip())

        found = sorted({shown(c) for c in values}, key=_number_first)
        held: dict[str, list[int]] = {}
        for line, cell in zip(lines, cells, strict=True):
            if cell in bad:
                held.setdefault(shown(cell), []).append(line)
        where = "; ".join(
            f"row{'s' if len(rows) > 1 else ''} {', '.join(map(str, rows[:SHOWN_ROWS]))}"
            f"{', ...' if len(rows) > SHOWN_ROWS else ''} hold{'' if len(rows) > 1 else 's'} {value}"
            for value, rows in list(held.items())[:3]
        )
        raise fail(
            f"label column {label_column!r} holds {len(found)} value{'s' if len(found) > 1 else ''} "
            f"({', '.join(found)}); "
            f"a binary table's label is 0 or 1: {where}"
        )
    return np.array([values[c] for c in cells], dtype=np.float64)


def _number_first(text: str) -> tuple[int, float, str]:
    """Numbers in order, then nan, then words."""
    try:
        value = float(text)
    except ValueError:
        return (2, 0.0, text)
    return (0, value, text) if value == value else (1, 0.0, text)


def _numbers(rows: list[list[str]], lines: tuple[int, ...], header: list[str], label: int, fail: Fail) -> np.ndarray:
    """Every cell as float64 (the label column included); the first bad feature cell named when one is bad."""
    try:
        x = np.array(rows, dtype=np.float64)
    except ValueError:
        x = None
    if x is not None and np.isfinite(x).all():
        return x
    values = [
        [_cell(cell, line, header[j], fail) for j, cell in enumerate(row) if j != label]
        for line, row in zip(lines, rows, strict=True)
    ]
    x = np.array(values, dtype=np.float64)  # every feature cell is a finite number: numpy balked at a label
    return np.insert(x, label, 0.0, axis=1)


def _cell(cell: str, line: int, column: str, fail: Fail) -> float:
    where = f"line {line}, column {column!r}"
    if not cell.strip():
        raise fail(f"{where}: the value is missing")
    try:
        value = float(cell)
    except ValueError:
        raise fail(f"{where}: {cell!r} is not a number") from None
    if not math.isfinite(value):
        raise fail(f"{where}: {cell!r} is not a finite number")
    return value
