"""The console's predictions: one model's boxes (and the truth's, when a mask is given) for one uploaded image or
volume, kept in a bounded in-memory cache so that the page can step through a volume's slices without running
the model again."""

from __future__ import annotations

import io
import secrets
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from tclearn.errors import DataError, NotFoundError
from tclearn.learning.boxes import Box, Box3D, find_boxes, find_boxes_3d
from tclearn.learning.models import ModelConfig
from tclearn.learning.overlays import mosaic, mosaic_slices, overlay
from tclearn.learning.predict import check_predictable, predict_probability

CACHE_ENTRIES = 16
CACHE_BYTES = 256 << 20  # images and volumes kept, all entries together
PNG_LEVEL = 1  # an overlay is shown once: a third of the default's time, ~7 % larger


@dataclass(frozen=True)
class Predicted:
    """A prediction the console can draw again: its image, the boxes found and the truth's (None without mask)."""

    id: str
    owner: str
    model_id: int
    name: str
    image: np.ndarray  # (C, *spatial) as uploaded
    boxes: Sequence[Box | Box3D]
    truth: Sequence[Box | Box3D] | None
    threshold: float
    min_area: int

    @property
    def dims(self) -> int:
        return self.image.ndim - 1

    @property
    def depth(self) -> int:
        """Slices a page can step through: z of a volume, 1 for a 2-D image."""
        return int(self.image.shape[3]) if self.dims == 3 else 1

    @property
    def slices(self) -> list[int]:
        """The z slices worth looking at first (each box's centre, then spread), as the 3-D mosaic picks them."""
        if self.dims != 3:
            return [0]
        return mosaic_slices(self.depth, [b for b in (*self.boxes, *(self.truth or [])) if isinstance(b, Box3D)])


def truth_of(mask: np.ndarray, image: np.ndarray, name: str) -> np.ndarray:
    """The binary truth `(*spatial)` of a mask read for `image`; `DataError` naming `name` when the shapes differ."""
    if mask.shape[1:] != image.shape[1:]:
        raise DataError(
            f"mask {name!r} is {tuple(mask.shape[1:])} but the image is {tuple(image.shape[1:])}; "
            "upload the mask drawn on this image",
            path=name,
        )
    return (mask.max(axis=0) > 0).astype(np.float32)


def find(
    network: nn.Module,
    config: ModelConfig,
    image: np.ndarray,
    truth: np.ndarray | None,
    name: str,
    threshold: float,
    min_area: int,
    device: str = "auto",
) -> tuple[list[Box] | list[Box3D], list[Box] | list[Box3D] | None]:
    """The boxes `network` finds in `image` (2-D or 3-D, as `config` says) and those of `truth`, if any."""
    check_predictable(config, threshold)
    prob = predict_probability(network, config, image, name, device)
    if config.spatial_dims == 3:
        truth_3d = None if truth is None else find_boxes_3d(truth, 0.5, "truth")
        return find_boxes_3d(prob, threshold, min_voxels=min_area), truth_3d
    truth_2d = None if truth is None else find_boxes(truth, 0.5, "truth")
    return find_boxes(prob, threshold, min_area=min_area), truth_2d


def picture(predicted: Predicted, z: int | None = None) -> bytes:
    """The overlay PNG: a 2-D image's prediction (truth beside it), or slice `z` of a volume (default: the first
    slice worth looking at); `DataError` for a slice outside the image."""
    truth = predicted.truth
    if predicted.dims == 2:
        if z not in (None, 0):
            raise DataError(f"image {predicted.name!r} is 2-D: it has no slice {z}; ask for z=0 or none")
        flat = [b for b in predicted.boxes if isinstance(b, Box)]
        drawn = overlay(predicted.image, flat, None if truth is None else [b for b in truth if isinstance(b, Box)])
    else:
        chosen = predicted.slices[0] if z is None else z
        if not 0 <= chosen < predicted.depth:
            raise DataError(f"slice {z} is outside volume {predicted.name!r}: z goes from 0 to {predicted.depth - 1}")
        deep = [b for b in predicted.boxes if isinstance(b, Box3D)]
        truth_3d = None if truth is None else [b for b in truth if isinstance(b, Box3D)]
        drawn = mosaic(predicted.image, deep, truth_3d, [chosen])
    buffer = io.BytesIO()
    drawn.save(buffer, format="PNG", compress_level=PNG_LEVEL)
    return buffer.getvalue()


class PredictionCache:
    """The last predictions, by a random id, at most `entries` of them and `max_bytes` of images together."""

    def __init__(self, entries: int = CACHE_ENTRIES, max_bytes: int = CACHE_BYTES) -> None:
        self.entries, self.max_bytes = entries, max_bytes
        self._kept: OrderedDict[str, Predicted] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._kept)

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(12)

    def put(self, predicted: Predicted) -> None:
        with self._lock:
            self._kept[predicted.id] = predicted
            while len(self._kept) > self.entries or (
                len(self._kept) > 1 and sum(p.image.nbytes for p in self._kept.values()) > self.max_bytes
            ):
                self._kept.popitem(last=False)

    def get(self, prediction_id: str, owner: str) -> Predicted:
        """One of `owner`'s predictions; another caller's is not found, like a forgotten one (ids do not leak)."""
        with self._lock:
            found = self._kept.get(prediction_id)
            if found is not None and found.owner == owner:
                self._kept.move_to_end(prediction_id)
                return found
        raise NotFoundError(
            f"no prediction {prediction_id!r} here: it was never made, or the console has forgotten it "
            f"(it keeps the last {self.entries}); upload the image again"
        )
