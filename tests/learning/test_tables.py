"""The strict reader of binary feature tables: one clear DataError per bad input, naming file, column and line."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tclearn.errors import DataError, NotFoundError
from tclearn.learning.data import Task
from tclearn.learning.tables import class_metric, read_table


def table(tmp_path: Path, text: str, name: str = "train.csv") -> Path:
    path = tmp_path / "hospital-1" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def refused(path: Path, message: str, **kwargs: object) -> DataError:
    with pytest.raises(DataError, match=re.escape(message)) as caught:
        read_table(path, **kwargs)  # type: ignore[arg-type]
    assert str(path) in str(caught.value) and caught.value.details["path"] == str(path)
    return caught.value


def test_a_good_table(tmp_path: Path) -> None:
    path = table(tmp_path, "age,creatinine,label\n61,1.2,0\n74,2.5,1.0\n\n58,0.9,0.0\n")
    t = read_table(path)
    assert t.path == path and t.columns == ("age", "creatinine")
    assert t.x.dtype == np.float64 and t.x.tolist() == [[61, 1.2], [74, 2.5], [58, 0.9]]
    assert t.y.tolist() == [0.0, 1.0, 0.0]
    samples = t.samples()
    assert samples.task is Task.CLASSIFICATION and samples.classes == ("0", "1")
    assert samples.images.dtype == torch.float32 and samples.targets.tolist() == [0, 1, 0]
    assert samples.names == ("row2", "row3", "row5")  # the CSV line numbers (line 4 is blank)
    assert class_metric(t.y) == "accuracy"


def test_quoted_cells_and_another_label_column(tmp_path: Path) -> None:
    t = read_table(table(tmp_path, 'outcome,"f 1"\n"1","3.5"\n0,4\n'), label_column="outcome")
    assert t.columns == ("f 1",) and t.x.tolist() == [[3.5], [4.0]] and t.y.tolist() == [1.0, 0.0]


def test_a_single_class_table_is_accepted(tmp_path: Path) -> None:
    cases = read_table(table(tmp_path, "f0,label\n1,1\n2,1\n", "cases.csv"))
    controls = read_table(table(tmp_path, "f0,label\n1,0\n2,0.0\n", "controls.csv"))
    assert class_metric(cases.y) == "recall" and class_metric(controls.y) == "specificity"
    with pytest.raises(DataError, match="no labels"):
        class_metric(np.zeros(0))


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"train\.csv' does not exist"):
        read_table(tmp_path / "train.csv")


def test_an_empty_file(tmp_path: Path) -> None:
    refused(table(tmp_path, ""), "is empty")
    refused(table(tmp_path, "\n\n"), "is empty")


def test_a_header_without_rows(tmp_path: Path) -> None:
    refused(table(tmp_path, "f0,f1,label\n"), "has a header but no rows (columns: f0, f1, label)")
    refused(table(tmp_path, '"f0",label\n'), "has a header but no rows")


def test_no_label_column(tmp_path: Path) -> None:
    refused(table(tmp_path, "f0,f1,outcome\n1,2,0\n"), "has no label column 'label'; its columns: f0, f1, outcome")


def test_no_feature_column(tmp_path: Path) -> None:
    refused(table(tmp_path, "label\n1\n"), "has no feature column besides the label column 'label'")


def test_a_duplicated_column(tmp_path: Path) -> None:
    refused(table(tmp_path, "f0,f1,f0,label\n1,2,3,0\n"), "names column(s) 'f0' more than once")


def test_an_unnamed_column(tmp_path: Path) -> None:
    refused(table(tmp_path, "f0,,label\n1,2,0\n"), "has no name for column(s) 2")


def test_a_cell_that_is_not_a_number(tmp_path: Path) -> None:
    path = table(tmp_path, "age,creatinine,label\n" + "60,1.0,0\n" * 5 + "61,n/a,1\n")
    error = refused(path, "line 7, column 'creatinine': 'n/a' is not a number")
    assert str(error) == f"{str(path)!r} line 7, column 'creatinine': 'n/a' is not a number"
    refused(table(tmp_path, "f0,f1,label\n1,2,0\n3,4#,1\n"), "line 3, column 'f1': '4#' is not a number")


def test_a_missing_value(tmp_path: Path) -> None:
    refused(table(tmp_path, "f0,f1,label\n1,2,0\n3,,1\n"), "line 3, column 'f1': the value is missing")
    refused(table(tmp_path, "f0,f1,label\n1,2,0\n3,4,\n"), "line 3, column 'label': the label is missing")


@pytest.mark.parametrize("cell", ["inf", "-Inf", "nan", "NaN"])
def test_a_value_that_is_not_finite(tmp_path: Path, cell: str) -> None:
    refused(
        table(tmp_path, f"f0,f1,label\n1,2,0\n{cell},4,1\n"), f"line 3, column 'f0': '{cell}' is not a finite number"
    )


def test_rows_with_too_few_or_too_many_cells(tmp_path: Path) -> None:
    refused(table(tmp_path, "f0,f1,label\n1,2,0\n1,2\n"), "line 3 has 2 cells; the header has 3 columns")
    refused(table(tmp_path, "f0,f1,label\n1,2,0,5\n"), "line 2 has 4 cells; the header has 3 columns")


def test_labels_other_than_0_and_1(tmp_path: Path) -> None:
    rows = ["1,0", "2,1", "3,0", "4,2", "5,1", "6,1", "7,0", "8,2.0"]
    refused(
        table(tmp_path, "f0,label\n" + "\n".join(rows) + "\n"),
        "label column 'label' holds 3 values (0, 1, 2); a binary table's label is 0 or 1: rows 5, 9 hold 2",
    )
    refused(
        table(tmp_path, "f0,label\n1,yes\n2,no\n3,yes\n"),
        "holds 2 values ('no', 'yes'); a binary table's label is 0 or 1: rows 2, 4 hold 'yes'; row 3 holds 'no'",
    )
    refused(table(tmp_path, "f0,label\n1,-1\n2,nan\n"), "holds 2 values (-1, nan)")


def test_columns_that_differ_from_g(tmp_path: Path) -> None:
    path = table(tmp_path, "age,sodium,label\n1,2,0\n")
    refused(
        path, "has other feature columns than G: missing 'creatinine'; extra 'sodium'", columns=["age", "creatinine"]
    )
    refused(path, "has other feature columns than G: extra 'sodium'", columns=["age"])


def test_reordered_columns_follow_g(tmp_path: Path) -> None:
    t = read_table(table(tmp_path, "b,label,a\n1,0,2\n3,1,4\n"), columns=("a", "b"))
    assert t.columns == ("a", "b") and t.x.tolist() == [[2, 1], [4, 3]] and t.y.tolist() == [0, 1]


def test_a_big_table_reads_quickly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    block = rng.lognormal(0.0, 1.0, (1000, 64)) * 100  # 1,000 rows written 100 times: a fast test
    labels = rng.integers(0, 2, 1000)
    path = tmp_path / "big.csv"
    rows = [",".join([*(f"{v:.6g}" for v in row), str(label)]) for row, label in zip(block, labels, strict=True)]
    header = ",".join([*(f"f{j}" for j in range(64)), "label"])
    path.write_text(header + "\n" + ("\n".join(rows) + "\n") * 100)
    x, y = np.tile(block, (100, 1)), np.tile(labels, 100)
    start = time.perf_counter()
    t = read_table(path)
    elapsed = time.perf_counter() - start
    assert t.x.shape == (100_000, 64) and np.allclose(t.x, x, rtol=1e-5) and (t.y == y).all()
    assert elapsed < 3.0, elapsed
