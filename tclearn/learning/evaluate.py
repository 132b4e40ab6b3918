"""What a validator measures: Dice and IoU for segmentation, accuracy, AUC, precision and recall for
classification, per-label and mean AUC, recall and precision for multi-label (`multilabel.py`). Batched, in
eval mode and without gradients, so the same weights give the same scores.

`Evaluation.score` is the one number a validator reports on chain (Dice, accuracy, or the mean AUC).
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
from tclearn.learning.tables import class_metric
from tclearn.learning.train import as_targets, check_output


@dataclass(frozen=True)
class Evaluation:
    task: Task
    samples: int
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def score(self) -> float:
        return self.metrics[headline_metric(self.task)]


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


def unusable(data: Samples, values: int) -> Evaluation:
    """A model that outputs NaN or infinity is broken, whatever else it gets right: it scores 0."""
    return Evaluation(data.task, len(data), {headline_metric(data.task): 0.0, "non_finite_outputs": float(values)})


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
        broken = 0
        for logits, truth in batched:
            broken += int((~torch.isfinite(logits)).sum())
            masks = drop_specks(segmentation_masks(logits), min_area)
            dice(masks, truth)
            iou(masks, truth)
        if broken:
            return unusable(data, broken)
        metrics = {"dice": _scalar(dice.aggregate()), "iou": _scalar(iou.aggregate())}
        return Evaluation(data.task, len(data), metrics)
    pairs = list(batched)
    logits, truth = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
    if not bool(torch.isfinite(logits).all()):
        return unusable(data, int((~torch.isfinite(logits)).sum()))
    if data.task is Task.MULTILABEL:
        metrics = multilabel_metrics(torch.sigmoid(logits), truth, data.classes)
        if math.isnan(metrics["auc"]):
            raise DataError(
                f"no label of these {len(data)} samples has both a positive and a negative case: the mean AUC "
                "is undefined; score on a set that holds both for at least one label"
            )
        return Evaluation(data.task, len(data), metrics)
    probs = (
        probabilities(logits)
        if logits.shape[1] > 1
        else torch.cat([1 - torch.sigmoid(logits), torch.sigmoid(logits)], 1)
    )
    predicted = probs.argmax(dim=1)
    classes = probs.shape[1]
    precision, recall = precision_recall(predicted, truth, classes)
    metrics = {
        "accuracy": float((predicted == truth).float().mean()),
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
    return Evaluation(data.task, len(data), metrics)
