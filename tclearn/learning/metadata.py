"""The metadata `tclearn train` writes beside a model file: architecture + config and its hash, the parent
file, training facts, the training-set manifest summary and the scores on the training data — never data.

A coalition candidate declares its own typed record instead (`tclearn.records.CandidateMetadata`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tclearn.learning.manifest import Manifest
from tclearn.learning.models import ModelConfig, arch_hash
from tclearn.learning.train import TrainingFacts


def increment_metadata(
    config: ModelConfig,
    facts: TrainingFacts,
    manifest: Manifest,
    parent: str | None = None,
    scores: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    return {
        "model": config.to_dict(),
        "arch_hash": arch_hash(config),
        "parent": parent,
        "training": facts.to_dict(),
        "data": manifest.summary(),
        "scores": dict(scores or {}),
    }
