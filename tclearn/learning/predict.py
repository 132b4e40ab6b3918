"""Prediction for people: masks -> connected components -> boxes with probabilities -> overlay PNGs + JSON.

Models come from `modelfile.load_model` (a state dict file with its config JSON). Input is a folder of
images (PNG, JPEG, TIFF, NIfTI, DICOM), or a folder with `images/` and optional `masks/`; where a
ground-truth mask exists it is drawn beside the prediction.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from skimage.measure import label, regionprops
from torch import nn
from torch.nn import functional

from tclearn.errors import ConfigError, DataError
from tclearn.learning.data import find_mask, list_images, read_image, read_mask, stem
from tclearn.learning.evaluate import probabilities
from tclearn.learning.models import SEGMENTATION, ModelConfig
from tclearn.learning.train import choose_device

PAD_MULTIPLE = 16  # U-Nets need sizes divisible by the product of their strides
PRED_COLOUR, TRUTH_COLOUR = (255, 64, 64), (64, 220, 64)


@dataclass(frozen=True)
class Box:
    label: str
    min_row: int
    min_col: int
    max_row: int  # exclusive, as scikit-image reports it
    max_col: int
    probability: float
    area: int


def find_boxes(prob: np.ndarray, threshold: float = 0.5, name: str = "finding", min_area: int = 1) -> list[Box]:
    """Connected components of `prob > threshold` of at least `min_area` pixels, each with its mean
    probability, largest first."""
    components = label(prob > threshold, connectivity=2)
    boxes = []
    for region in regionprops(components, intensity_image=prob):
        min_row, min_col, max_row, max_col = (int(v) for v in region.bbox)
        probability, area = float(region.intensity_mean), int(region.area)
        if area < min_area:
            continue
        boxes.append(Box(name, min_row, min_col, max_row, max_col, probability, area))
    return sorted(boxes, key=lambda b: (-b.area, b.min_row, b.min_col))


@torch.no_grad()
def predict_probability(model: nn.Module, image: np.ndarray, device: str = "auto") -> np.ndarray:
    """Foreground probability `(H, W)` for one image `(C, H, W)`, padded to fit the network."""
    dev = choose_device(device)
    x = torch.from_numpy(image).unsqueeze(0).float()
    h, w = x.shape[-2:]
    x = functional.pad(x, (0, -w % PAD_MULTIPLE, 0, -h % PAD_MULTIPLE))
    model.eval().to(dev)
    probs = probabilities(model(x.to(dev)).float().cpu())[0, :, :h, :w]
    return (probs[0] if probs.shape[0] == 1 else 1.0 - probs[0]).numpy()


def _panel(image: np.ndarray, boxes: list[Box], colour: tuple[int, int, int], title: str, scale: int) -> Image.Image:
    grey = np.clip(image[0] if image.ndim == 3 else image, 0, 1)
    rgb = Image.fromarray((grey * 255).astype(np.uint8)).convert("RGB")
    rgb = rgb.resize((rgb.width * scale, rgb.height * scale), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(rgb)
    for box in boxes:
        rect = (box.min_col * scale, box.min_row * scale, box.max_col * scale - 1, box.max_row * scale - 1)
        draw.rectangle(rect, outline=colour, width=2)
        text = box.label if title == "truth" else f"{box.label} {box.probability:.2f}"
        draw.text((rect[0] + 2, max(rect[1] - 11, 0)), text, fill=colour)
    draw.text((3, 2), title, fill=(255, 255, 0))
    return rgb


def overlay(image: np.ndarray, predicted: list[Box], truth: list[Box] | None = None) -> Image.Image:
    """The prediction panel, and the truth panel beside it when truth is given."""
    scale = max(1, 256 // max(image.shape[-2:]))
    panels = [_panel(image, predicted, PRED_COLOUR, "prediction", scale)]
    if truth is not None:
        panels.insert(0, _panel(image, truth, TRUTH_COLOUR, "truth", scale))
    out = Image.new("RGB", (sum(p.width for p in panels), panels[0].height))
    for i, panel in enumerate(panels):
        out.paste(panel, (i * panel.width, 0))
    return out


def check_predictable(config: ModelConfig, threshold: float) -> None:
    """Boxes are drawn for 2D segmentation models only, at a threshold strictly between 0 and 1."""
    if config.arch not in SEGMENTATION or config.spatial_dims != 2:
        raise ConfigError(f"predict draws boxes for 2D segmentation models; got {config.arch} {config.spatial_dims}D")
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"threshold must be between 0 and 1, got {threshold}")


def predict_boxes(
    model: nn.Module,
    config: ModelConfig,
    image: np.ndarray,
    name: str,
    threshold: float = 0.5,
    device: str = "auto",
    min_area: int = 1,
) -> list[Box]:
    """The boxes `model` finds in one image `(C, H, W)` (named `name` in errors) that must fit `config`."""
    if image.ndim != 3 or image.shape[0] != config.in_channels:
        raise DataError(
            f"image {name!r} has shape {image.shape}; the model expects {config.in_channels} channel(s), 2D",
            path=name,
        )
    return find_boxes(predict_probability(model, image, device), threshold, min_area=min_area)


def predict_folder(
    model: nn.Module,
    config: ModelConfig,
    input_dir: str | Path,
    out_dir: str | Path,
    threshold: float = 0.5,
    device: str = "auto",
    min_area: int = 1,
) -> dict[str, Any]:
    """Predict every image under `input_dir`; write overlays and `predictions.json` to `out_dir`."""
    check_predictable(config, threshold)
    root = Path(input_dir)
    images_dir = root / "images" if (root / "images").is_dir() else root
    masks_dir = root / "masks" if (root / "masks").is_dir() else None
    out = Path(out_dir)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for file in list_images(images_dir):
        image = read_image(file)
        boxes = predict_boxes(model, config, image, str(file), threshold, device, min_area)
        truth = None
        if masks_dir is not None:
            truth = find_boxes(read_mask(find_mask(file, masks_dir))[0], 0.5, "truth")
        overlay(image, boxes, truth).save(out / "overlays" / f"{stem(file)}.png")
        results[file.name] = {
            "boxes": [asdict(b) for b in boxes],
            **({"truth": [asdict(b) for b in truth]} if truth is not None else {}),
        }
    report = {"model": config.to_dict(), "threshold": threshold, "min_area": min_area, "images": results}
    (out / "predictions.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report
