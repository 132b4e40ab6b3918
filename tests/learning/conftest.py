"""Shared fixtures: one thread, and a tiny synthetic coalition written once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tclearn.learning.synth import synth_coalition

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def small_coalition(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("small")
    synth_coalition(root, hospitals=2, train=8, test=2, global_size=4, size=32, seed=1)
    return root
