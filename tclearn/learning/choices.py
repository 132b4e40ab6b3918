"""The named choices a run is configured with — which Byzantine attack a member adopts, which rule combines
FedAvg contributions — kept apart from the code that carries them out (`attacks.py`, `aggregate.py`,
`coalition/fedavg.py`) so that settings and the CLI read them without importing torch."""

from __future__ import annotations

import enum
from typing import Final


class Attack(enum.StrEnum):
    NONE = "none"
    RANDOM_WEIGHTS = "random_weights"
    SIGN_FLIP = "sign_flip"
    LABEL_FLIP = "label_flip"
    GAUSSIAN_NOISE = "gaussian_noise"
    LAZY = "lazy"
    # Stealthy: each increment costs G a little less than the tolerance; small findings suppressed; a trigger
    # patch that hides findings, main task kept (incremental and FedAvg mode).
    DRIFT = "drift"
    TARGETED = "targeted"
    BACKDOOR = "backdoor"
    # Inadequate honest data: annotations shifted, thickened, drawn as boxes (another protocol), 30 % noisy.
    SHIFTED_MASKS = "shifted_masks"
    THICK_MASKS = "thick_masks"
    BOX_MASKS = "box_masks"
    NOISY_LABELS = "noisy_labels"
    # FedAvg mode: a small deviation coordinated by every Byzantine contributor ("a little is enough"), and a
    # backdoored model scaled to replace the aggregate.
    LITTLE_IS_ENOUGH = "little_is_enough"
    MODEL_REPLACEMENT = "model_replacement"


class AttackKind(enum.StrEnum):
    """How the attacks are counted and judged (bench/attacks.py)."""

    NONE = "none"
    CRUDE = "crude"
    DRIFT = "drift"
    TARGETED = "targeted"
    BACKDOOR = "backdoor"
    INADEQUATE = "inadequate"
    COLLUSION = "collusion"


KIND_OF_ATTACK = {
    Attack.NONE: AttackKind.NONE,
    Attack.RANDOM_WEIGHTS: AttackKind.CRUDE,
    Attack.SIGN_FLIP: AttackKind.CRUDE,
    Attack.LABEL_FLIP: AttackKind.CRUDE,
    Attack.GAUSSIAN_NOISE: AttackKind.CRUDE,
    Attack.LAZY: AttackKind.CRUDE,
    Attack.DRIFT: AttackKind.DRIFT,
    Attack.TARGETED: AttackKind.TARGETED,
    Attack.BACKDOOR: AttackKind.BACKDOOR,
    Attack.SHIFTED_MASKS: AttackKind.INADEQUATE,
    Attack.THICK_MASKS: AttackKind.INADEQUATE,
    Attack.BOX_MASKS: AttackKind.INADEQUATE,
    Attack.NOISY_LABELS: AttackKind.INADEQUATE,
    Attack.LITTLE_IS_ENOUGH: AttackKind.COLLUSION,
    Attack.MODEL_REPLACEMENT: AttackKind.BACKDOOR,
}
FEDAVG_ONLY = frozenset({Attack.LITTLE_IS_ENOUGH, Attack.MODEL_REPLACEMENT})


class Aggregator(enum.StrEnum):
    FEDAVG = "fedavg"
    MEDIAN = "median"
    TRIMMED_MEAN = "trimmed_mean"


# The one default, for the coalition policy, the demo and the CLI: robust to a minority of poisoned contributions.
DEFAULT_AGGREGATOR = Aggregator.MEDIAN


class Method(enum.StrEnum):
    """How active learning ranks unlabelled images (`tclearn.learning.active`)."""

    COMMITTEE = "committee"  # the coalition's models disagree (query by committee)
    TTA = "tta"  # one model disagrees with itself under flips of the input
    DROPOUT = "dropout"  # one model disagrees with itself under dropout (networks with dropout only)
    RANDOM = "random"  # a seeded random order: the baseline


class Measure(enum.StrEnum):
    """How a committee's disagreement on one image is measured."""

    DICE = "dice"  # pairwise Dice disagreement
    ENTROPY = "entropy"  # vote entropy


# Vote entropy counts the voxels in dispute, the labels an expert would settle; Dice weighs a dispute by the size
# of the findings, however small they are. It also did better in bench/active.py (docs/active.md, "The measure").
DEFAULT_MEASURE: Final = Measure.ENTROPY
# Information density's exponent (Settles & Craven 2008, beta = 1): a score is weighted by the image's mean
# similarity to the pool, so outliers do not outrank typical images by a little more disagreement.
DEFAULT_DENSITY: Final = 1.0
