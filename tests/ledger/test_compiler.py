"""The contract build: the committed artifact is what the source compiles to, and the check can fail."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tclearn.ledger import compiler
from tclearn.ledger.artifact import load_artifact


def test_committed_artifact_matches_a_fresh_compile() -> None:
    fresh = compiler.build_artifact()
    committed = json.loads(compiler.ARTIFACT.read_text())
    assert fresh == committed
    assert fresh["settings"]["evmVersion"] == "paris"
    assert load_artifact().deployed_bytecode == fresh["deployedBytecode"]


def test_check_fails_on_a_stale_artifact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = json.loads(compiler.ARTIFACT.read_text())
    stale["bytecode"] = stale["bytecode"][:-2] + "00"
    path = tmp_path / "Coalition.json"
    path.write_text(compiler.render(stale))
    monkeypatch.setattr(compiler, "ARTIFACT", path)
    assert compiler.main(["--check"]) == 1
    assert compiler.main([]) == 0  # rebuilding repairs it
    assert compiler.main(["--check"]) == 0
