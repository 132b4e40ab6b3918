"""The training defaults, defined once: every place that trains (a site, the demo, `coalition up`, `tclearn
train`, a bare `TrainConfig`) refers to one of these sets, or names its own value with its reason; and the
smallest finding a prediction keeps.

Kept apart from `train.py` so that settings and the CLI read them without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class TrainingDefaults:
    """Training values every driver starts from; each place that trains refers to one of the sets below."""

    epochs: int
    batch_size: int
    lr: float
    min_batch_size: int
    seed: int = 0


# A coalition's increments: what a site trains with unless its file says otherwise (`[training]`), and what the
# demo and `coalition up` start from; `min_batch_size` is the coalition's policy, enforced on every member.
COALITION_TRAINING = TrainingDefaults(epochs=8, batch_size=8, lr=0.01, min_batch_size=4)
# One increment outside a coalition (`tclearn train`, a bare `TrainConfig`): a short, cautious run, no minimum.
LOCAL_TRAINING = TrainingDefaults(epochs=1, batch_size=8, lr=1e-3, min_batch_size=1)
# Epochs per increment in `coalition up`, below the coalition default (COALITION_TRAINING): every hospital's member
# API and node daemon share one machine, and a round trains on one of them while the others evaluate.
UP_EPOCHS = 4
# Candidates in `tclearn demo` (hospitals in turn), each a short increment (`DEMO_EPOCHS` in simulation/demo.py): with
# hospitals that each see one part of the case mix, many short increments forget less of the others' than few long
# ones (docs/coalition.md). Here, not in the demo's module, so that the CLI reads it without importing torch.
DEMO_ROUNDS = 20
# Labelled cases per hospital in the demo's synthetic coalition: few, as in a real one (`tclearn demo --cases`).
DEMO_TRAIN = 24
# ... and in `tclearn demo --variant C`, where every encrypted increment and score goes through the supervisor.
ENCRYPTED_DEMO_ROUNDS = 6
# The loss of the simulations' segmentation increments (the demo, `coalition up`): Dice alone, not Dice + cross-entropy.
# Findings are a few per cent of the pixels, and with the cross-entropy term an early increment collapses to "no
# finding anywhere" (Dice 0.27 on G, the share of cases without findings), which validators rightly reject, round
# after round; Dice loss climbs steadily instead (docs/coalition.md).
SIMULATION_LOSS: Final = "dice"
# Prediction: a predicted component smaller than this many pixels (voxels in 3D) is a speck, not a finding.
MIN_FINDING_AREA = 5


@dataclass(frozen=True)
class PrivateTraining:
    """DP-SGD's optimiser, and the update bound of a DP coalition (docs/privacy.md, "Utility").

    Adam rescales each coordinate by its own noisy second moment and turns DP noise into steps as large as the
    signal's: on the demo's UNet (240 cases, epsilon 8 in one run) Adam at 0.01 reached Dice 0.07 on G, momentum SGD
    at 0.5 with clipping norm 0.1 reached 0.26 (0.67 with that clipping and no noise); in the coalition (3 hospitals
    of 960 cases, batch 64, epsilon 8 each) SGD at 1.0 reached 0.63 on G, at 0.5 0.53, against 0.62 without DP.
    DP noise is a random walk of every weight: honest DP increments measured 2.1-5.6 times their parent's norm
    (batch 8-64), beyond the default `max_update` of 2 that non-private increments stay under, so a DP coalition's
    policy bounds updates at `max_update` instead."""

    optimiser: str = "sgd"
    lr: float = 1.0
    max_grad_norm: float = 0.1
    max_update: float = 10.0


DP_TRAINING = PrivateTraining()


@dataclass(frozen=True)
class PrivateDemo:
    """`tclearn demo --dp-epsilon`'s data: DP needs more cases than `DEMO_TRAIN` (at 24 cases and batch 8 an increment
    moved 11 times its parent's norm); with 240 and batch 32, one increment per hospital at epsilon 8, 3 of 4 committed
    (the fourth the Byzantine one) and the head reached Dice 0.54 on G in 95 s on 2 cores."""

    cases: int = 240
    batch_size: int = 32


DP_DEMO = PrivateDemo()


@dataclass(frozen=True)
class EncryptedTraining:
    """Variant C: full-batch gradient steps per encrypted increment and their learning rate."""

    steps: int = 3
    lr: float = 1.0


ENCRYPTED_TRAINING = EncryptedTraining()
