"""The named choices a run is configured with — which Byzantine attack a member adopts, which rule combines
FedAvg contributions — kept apart from the code that carries them out (`attacks.py`, `aggregate.py`,
`coalition/fedavg.py`) so that settings and the CLI read them without importing torch."""

from __future__ import annotations

import enum


class Attack(enum.StrEnum):
    NONE = "none"
    RANDOM_WEIGHTS = "random_weights"
    SIGN_FLIP = "sign_flip"
    LABEL_FLIP = "label_flip"
    GAUSSIAN_NOISE = "gaussian_noise"
    LAZY = "lazy"


class Aggregator(enum.StrEnum):
    FEDAVG = "fedavg"
    MEDIAN = "median"
    TRIMMED_MEAN = "trimmed_mean"
