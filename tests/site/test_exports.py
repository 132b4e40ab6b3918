"""Where an export may be written, checked before any work (no chain: the rule alone)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tclearn.errors import ConfigError
from tclearn.site.exports import check_target


def test_an_export_file_may_go_to_a_new_folder(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "model.safetensors"
    check_target(target)
    assert target.parent.is_dir() and not target.exists()


def test_an_export_file_is_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"is a folder; name a file, e\.g\. .*model\.safetensors"):
        check_target(tmp_path)


def test_an_export_file_under_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(ConfigError, match="cannot create the folder"):
        check_target(tmp_path / "taken" / "model.safetensors")
