"""The notebooks' pairs: each percent-format `.py` (the source) has its `.ipynb` twin with the same cells and no
outputs, and notebooks/README.md names each one. Running them is `make notebooks` (nbmake), part of `make test`."""

from __future__ import annotations

from pathlib import Path

import jupytext
import pytest
from nbformat import NotebookNode

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("[0-9]*.py"))
OWN_FILES = {"README.md", "jupytext.toml"}


def cells(notebook: NotebookNode) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source) for cell in notebook.cells]


def test_every_file_in_notebooks_is_a_pair_or_their_docs() -> None:
    assert SOURCES, f"no notebooks in {NOTEBOOKS}"
    names = {p.name for p in NOTEBOOKS.iterdir() if p.name != ".ipynb_checkpoints"}
    pairs = {name for source in SOURCES for name in (source.name, source.with_suffix(".ipynb").name)}
    assert names == pairs | OWN_FILES, "unpaired or stray files; pair a notebook with `jupytext --sync notebooks/*.py`"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_the_ipynb_holds_the_cells_of_its_py(source: Path) -> None:
    paired = source.with_suffix(".ipynb")
    assert paired.exists(), f"{paired.name} is missing: run `jupytext --sync notebooks/{source.name}`"
    text, notebook = jupytext.read(source), jupytext.read(paired)
    assert cells(notebook) == cells(text), f"{paired.name} differs from {source.name}: run `jupytext --sync`"
    assert any(kind == "code" for kind, _ in cells(text)) and any(kind == "markdown" for kind, _ in cells(text))


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_the_ipynb_is_committed_without_outputs(source: Path) -> None:
    notebook = jupytext.read(source.with_suffix(".ipynb"))
    executed = [i for i, cell in enumerate(notebook.cells) if cell.get("outputs") or cell.get("execution_count")]
    assert not executed, f"{source.stem}.ipynb keeps outputs in cells {executed}: clear them before committing"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_the_readme_describes_each_notebook(source: Path) -> None:
    assert source.name in (NOTEBOOKS / "README.md").read_text()
