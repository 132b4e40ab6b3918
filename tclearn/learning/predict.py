"""Prediction for people: a model's foreground probability -> connected components -> boxes with probabilities ->
overlay PNGs + JSON, for 2-D images and 3-D volumes.

Models come from `modelfile.load_model` (a state dict file with its config JSON). Input is a folder of images or
volumes (PNG, JPEG, TIFF, NIfTI, DICOM), or a folder with `images/` and optional `masks/`; where a ground-truth
mask exists its boxes are drawn beside (2-D) or around (3-D) the prediction. Probabilities come from
`inference.infer`: one padded pass for 2-D images, MONAI's sliding window for volumes. Every image is read and
checked before anything is written, so bad input leaves the output folder as it was.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from tclearn.errors import ConfigError, DataError
from tclearn.learning.boxes import Box, Box3D, find_boxes, find_boxes_3d
from tclearn.learning.data import find_mask, list_images, read_image, read_mask, stem
from tclearn.learning.evaluate import probabilities
from tclearn.learning.inference import infer, size_multiple, window
from tclearn.learning.models import SEGMENTATION, ModelConfig
from tclearn.learning.overlays import mosaic, mosaic_slices, overlay

PREDICTS_DIMS = (2, 3)


def check_predictable(config: ModelConfig, threshold: float, dims: Sequence[int] = PREDICTS_DIMS) -> None:
    """Boxes are drawn for segmentation models of `dims` spatial axes, at a threshold strictly between 0 and 1."""
    if config.arch not in SEGMENTATION or config.spatial_dims not in dims:
        kinds = " or ".join(f"{d}D" for d in dims)
        raise ConfigError(
            f"predict draws boxes for {kinds} segmentation models; got {config.arch} {config.spatial_dims}D"
        )
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"threshold must be between 0 and 1, got {threshold}")


def check_image(config: ModelConfig, image: np.ndarray, name: str) -> None:
    """A `DataError` naming `name` unless `image` is `(C, *spatial)` with the model's channels and axes."""
    dims = image.ndim - 1
    if dims != config.spatial_dims or image.shape[0] != config.in_channels:
        kind = "volume" if dims == 3 else "image"
        raise DataError(
            f"{kind} {name!r} has shape {image.shape} ({dims}D); "
            f"the model expects {config.in_channels} channel(s), {config.spatial_dims}D",
            path=name,
        )


def predict_probability(
    model: nn.Module,
    config: ModelConfig,
    image: np.ndarray,
    name: str,
    device: str = "auto",
    roi_size: Sequence[int] | None = None,
) -> np.ndarray:
    """Foreground probability `(*spatial)` for one image `(C, *spatial)` that must fit `config` (named `name` in
    errors); any output channel but 0 is foreground when there are several."""
    check_image(config, image, name)
    x = torch.from_numpy(np.ascontiguousarray(image)).unsqueeze(0).float()
    logits = infer(model, x, roi_size, device=device, multiple=size_multiple(config))
    probs = probabilities(logits)[0]
    return (probs[0] if probs.shape[0] == 1 else 1.0 - probs[0]).numpy()


def predict_boxes(
    model: nn.Module,
    config: ModelConfig,
    image: np.ndarray,
    name: str,
    threshold: float = 0.5,
    device: str = "auto",
    min_area: int = 1,
) -> list[Box]:
    """The boxes a 2-D model finds in one image `(C, H, W)` (named `name` in errors)."""
    check_predictable(config, threshold, dims=(2,))
    return find_boxes(predict_probability(model, config, image, name, device), threshold, min_area=min_area)


def predict_boxes_3d(
    model: nn.Module,
    config: ModelConfig,
    volume: np.ndarray,
    name: str,
    threshold: float = 0.5,
    device: str = "auto",
    min_voxels: int = 1,
    roi_size: Sequence[int] | None = None,
) -> list[Box3D]:
    """The boxes a 3-D model finds in one volume `(C, x, y, z)` (named `name` in errors), through a sliding
    window of `roi_size` (default: `inference.window`)."""
    check_predictable(config, threshold, dims=(3,))
    prob = predict_probability(model, config, volume, name, device, roi_size)
    return find_boxes_3d(prob, threshold, min_voxels=min_voxels)


def _truth(file: Path, masks_dir: Path, image: np.ndarray) -> np.ndarray:
    mask_file = find_mask(file, masks_dir)
    mask = read_mask(mask_file)[0]
    if mask.shape != image.shape[1:]:
        raise DataError(
            f"mask {str(mask_file)!r} is {mask.shape} but its image {str(file)!r} is {image.shape[1:]}",
            path=str(mask_file),
        )
    return mask


def _entry(boxes: Sequence[Box | Box3D], truth: Sequence[Box | Box3D] | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"boxes": [asdict(b) for b in boxes]}
    if truth is not None:
        entry["truth"] = [asdict(b) for b in truth]
    return entry


def _png(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _predict_2d(
    prob: np.ndarray, image: np.ndarray, mask: np.ndarray | None, threshold: float, min_area: int
) -> tuple[dict[str, Any], Image.Image]:
    boxes = find_boxes(prob, threshold, min_area=min_area)
    truth = find_boxes(mask, 0.5, "truth") if mask is not None else None
    return _entry(boxes, truth), overlay(image, boxes, truth)


def _predict_3d(
    prob: np.ndarray, image: np.ndarray, mask: np.ndarray | None, threshold: float, min_area: int
) -> tuple[dict[str, Any], Image.Image]:
    boxes = find_boxes_3d(prob, threshold, min_voxels=min_area)
    truth = find_boxes_3d(mask, 0.5, "truth") if mask is not None else None
    slices = mosaic_slices(image.shape[3], [*boxes, *(truth or [])])
    return _entry(boxes, truth) | {"slices": slices}, mosaic(image, boxes, truth, slices)


def predict_folder(
    model: nn.Module,
    config: ModelConfig,
    input_dir: str | Path,
    out_dir: str | Path,
    threshold: float = 0.5,
    device: str = "auto",
    min_area: int = 1,
    roi_size: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Predict every image under `input_dir`; write `overlays/<name>.png` and `predictions.json` to `out_dir`.

    A 3-D entry also records the z `slices` its mosaic shows and the sliding window (`roi_size`) used.
    """
    check_predictable(config, threshold)
    root = Path(input_dir)
    images_dir = root / "images" if (root / "images").is_dir() else root
    masks_dir = root / "masks" if (root / "masks").is_dir() else None
    results: dict[str, Any] = {}
    pictures: dict[str, bytes] = {}
    for file in list_images(images_dir):
        image = read_image(file)
        check_image(config, image, str(file))
        mask = _truth(file, masks_dir, image) if masks_dir is not None else None
        prob = predict_probability(model, config, image, str(file), device, roi_size)
        if config.spatial_dims == 3:
            entry, picture = _predict_3d(prob, image, mask, threshold, min_area)
            used = window(image.shape[1:], roi_size, size_multiple(config))
            entry["roi_size"] = list(used) if used is not None else None
        else:
            entry, picture = _predict_2d(prob, image, mask, threshold, min_area)
        results[file.name] = entry
        # A DICOM series is a folder: its whole name names it; a file loses its image suffix.
        pictures[file.name if file.is_dir() else stem(file)] = _png(picture)
    out = Path(out_dir)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    for name, data in pictures.items():
        (out / "overlays" / f"{name}.png").write_bytes(data)
    report = {"model": config.to_dict(), "threshold": threshold, "min_area": min_area, "images": results}
    (out / "predictions.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report
