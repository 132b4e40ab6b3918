"""What a validator measures: Dice and IoU for segmentation, accuracy, AUC, precision and recall for
classification, per-label and mean AUC, recall and precision for multi-label (`multilabel.py`). Batched, in
eval mode and without gradients, so the same weights give the same scores.

`Evaluation.score` is the one number a validator reports on chain (Dice, accuracy, or the mean AUC);
`Evaluation.strata` are its scores on each stratum of the set (`strata.py`: findings by size, each class, each
label), from the same pass: the mean per-image Dice of each stratum's images (the headline Dice is the mean
over every image), the accuracy within each class, each label's AUC.
Segmentation is scored as it is used: predicted components smaller than `min_area` pixels (voxels) are
specks, not findings, and are dropped before Dice and IoU — as `tclearn predict` draws no box for them. An
image without findings scores 1 when nothing is predicted and 0 for any false finding.
A model that outputs NaN or infinity anywhere scores 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from monai.metrics import DiceMetric, MeanIoU, ROCAUCMetric
from scipy import ndimage
from torch import nn

from tclearn.errors import DataError
from tclearn.learning.data import ImageData, Task
from tclearn.learning.defaults import MIN_FINDING_AREA
from tclearn.learning.inference import infer
from tclearn.learning.multilabel import multilabel_metrics
from tclearn.learning.samples import Samples, batches
from tclearn.learning.strata import (
    FINDING_STRATA,
    Scored,
    StratumScore,
    class_names,
    class_strata,
    finding_strata,
    label_strata,
    mean_by_stratum,
    zeroed,
)
from tclearn.learning.tables import class_metric
from tclearn.learning.train import as_targets, check_output


@dataclass(frozen=True)
class Evaluation:
    task: Task
    samples: int
    metrics: dict[str, float] = field(default_factory=dict)
    strata: tuple[StratumScore, ...] = ()

    @property
    def score(self) -> float:
        return self.metrics[headline_metric(self.task)]

    def scored(self) -> Scored:
        return Scored(self.score, self.strata)


def headline_metric(task: Task) -> str:
    """The one metric a model is judged by for `task`: Dice for segmentation, accuracy for classification,
    the mean AUC over labels for multi-label."""
    return {Task.SEGMENTATION: "dice", Task.MULTILABEL: "auc"}.get(task, "accuracy")


def set_metric(data: Samples) -> str:
    """The headline metric as it applies to `data`. A binary classification set holding one class only (a site
    with a skewed case mix) is scored by accuracy all the same, which is then its recall (positives only) or its
    specificity (negatives only): the name says which."""
    metric = headline_metric(data.task)
    if metric != "accuracy" or not isinstance(data, ImageData) or len(data.classes) != 2 or not len(data):
        return metric
    return class_metric(data.targets.numpy())


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Sigmoid for one output channel, softmax over channels otherwise."""
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


def segmentation_masks(logits: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Binary foreground masks `(N, 1, *spatial)` from logits (any channel but 0 is foreground)."""
    probs = probabilities(logits)
    if logits.shape[1] == 1:
        return (probs > threshold).float()
    return (probs.argmax(dim=1, keepdim=True) > 0).float()


def drop_specks(masks: torch.Tensor, min_area: int = MIN_FINDING_AREA) -> torch.Tensor:
    """`masks` `(N, 1, *spatial)` without their connected components smaller than `min_area`."""
    if min_area <= 1:
        return masks
    kept = []
    for mask in masks.numpy().astype(bool):
        labels, count = ndimage.label(mask[0])
        sizes = np.bincount(labels.ravel(), minlength=count + 1)
        keep = sizes >= min_area
        keep[0] = False
        kept.append(keep[labels][None])
    return torch.from_numpy(np.stack(kept)).float()


def precision_recall(predicted: torch.Tensor, truth: torch.Tensor, classes: int) -> tuple[float, float]:
    """Macro-averaged precision and recall over the classes that occur (in truth or prediction)."""
    precisions: list[float] = []
    recalls: list[float] = []
    for c in range(classes):
        tp = int(((predicted == c) & (truth == c)).sum())
        pred_c, true_c = int((predicted == c).sum()), int((truth == c).sum())
        if pred_c == 0 and true_c == 0:
            continue
        precisions.append(tp / pred_c if pred_c else 0.0)
        recalls.append(tp / true_c if true_c else 0.0)
    if not precisions:
        return 0.0, 0.0
    return sum(precisions) / len(precisions), sum(recalls) / len(recalls)


def _scalar(value: torch.Tensor | tuple[torch.Tensor, ...] | list[torch.Tensor]) -> float:
    tensor = value[0] if isinstance(value, tuple | list) else value
    return float(tensor)


def outputs(
    model: nn.Module,
    data: Samples,
    batch_size: int = 16,
    device: str = "auto",
    roi_size: Sequence[int] | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """`(logits, targets)` of `data`, batch by batch, in eval mode without gradients (volumes through a sliding
    window of `roi_size` where they are larger)."""
    if len(data) == 0:
        raise DataError("cannot evaluate on an empty data set")
    with torch.no_grad():
        for x, y in batches(data, batch_size):
            truth = as_targets(y, data.task)
            yield check_output(infer(model, x, roi_size, device=device, task=data.task), truth, data.task), truth


def unusable(data: Samples, values: int, strata: tuple[StratumScore, ...] = ()) -> Evaluation:
    """A model that outputs NaN or infinity is broken, whatever else it gets right: it scores 0 (on every stratum
    of `strata` too)."""
    metrics = {headline_metric(data.task): 0.0, "non_finite_outputs": float(values)}
    return Evaluation(data.task, len(data), metrics, zeroed(strata))


def evaluate(
    model: nn.Module,
    data: Samples,
    batch_size: int = 16,
    device: str = "auto",
    min_area: int = MIN_FINDING_AREA,
    roi_size: Sequence[int] | None = None,
) -> Evaluation:
    """The model's metrics on `data`; segmentation is scored batch by batch (volumes never all in memory)."""
    batched = outputs(model, data, batch_size, device, roi_size)
    if data.task is Task.SEGMENTATION:
        # An empty truth predicted empty counts as a perfect 1.0, not as a missing value.
        dice = DiceMetric(include_background=True, reduction="mean", ignore_empty=False)
        iou = MeanIoU(include_background=True, reduction="mean", ignore_empty=False)
        broken, strata = 0, []
        for logits, truth in batched:
            broken += int((~torch.isfinite(logits)).sum())
            masks = drop_specks(segmentation_masks(logits), min_area)
            dice(masks, truth)
            iou(masks, truth)
            strata += finding_strata(truth)
        per_image = dice.get_buffer().float().mean(dim=1).tolist()
        by_size = mean_by_stratum(strata, per_image, FINDING_STRATA)
        if broken:
            return unusable(data, broken, by_size)
        metrics = {"dice": _scalar(dice.aggregate()), "iou": _scalar(iou.aggregate())}
        return Evaluation(data.task, len(data), metrics, by_size)
    pairs = list(batched)
    logits, truth = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
    finite = bool(torch.isfinite(logits).all())
    if data.task is Task.MULTILABEL:
        by_label = label_strata(truth, data.classes, dict.fromkeys(data.classes, 0.0))
        if not finite:
            return unusable(data, int((~torch.isfinite(logits)).sum()), by_label)
        metrics = multilabel_metrics(torch.sigmoid(logits), truth, data.classes)
        if math.isnan(metrics["auc"]):
            raise DataError(
                f"no label of these {len(data)} samples has both a positive and a negative case: the mean AUC "
                "is undefined; score on a set that holds both for at least one label"
            )
        aucs = {label: metrics[f"auc/{label}"] for label in data.classes}
        return Evaluation(data.task, len(data), metrics, label_strata(truth, data.classes, aucs))
    classes = max(logits.shape[1], 2)  # one output channel: a binary classifier

    def within_class(correct: torch.Tensor) -> tuple[StratumScore, ...]:
        return mean_by_stratum(class_strata(truth, data.classes), correct.tolist(), class_names(data.classes, classes))

    if not finite:
        return unusable(data, int((~torch.isfinite(logits)).sum()), within_class(torch.zeros(len(truth))))
    probs = (
        probabilities(logits)
        if logits.shape[1] > 1
        else torch.cat([1 - torch.sigmoid(logits), torch.sigmoid(logits)], 1)
    )
    predicted = probs.argmax(dim=1)
    correct = (predicted == truth).float()
    precision, recall = precision_recall(predicted, truth, classes)
    metrics = {
        "accuracy": float(correct.mean()),
        "precision": precision,
        "recall": recall,
    }
    if len(torch.unique(truth)) > 1:
        auc = ROCAUCMetric(average="macro")
        onehot = torch.nn.functional.one_hot(truth, classes).float()
        auc(probs, onehot)
        metrics["auc"] = float(auc.aggregate())  # type: ignore[arg-type]
    else:
        metrics["auc"] = float("nan")  # AUC is undefined when the truth holds one class
    return Evaluation(data.task, len(data), metrics, within_class(correct))
