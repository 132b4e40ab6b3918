"""Pictures of a prediction: predicted boxes in red, ground truth in green, labelled with the mean probability.

2-D: the image scaled to ~256 px, the truth panel beside the prediction panel. 3-D: a mosaic of slices across z
(`mosaic_slices` picks them: the central slice of every box, then slices spread over the boxes' z range, or over
the volume when nothing was found), each tile showing the boxes that cross its slice, truth drawn just outside
the predicted box so that both stay visible where they agree. Pure: images in, a PIL image out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from tclearn.learning.boxes import Box, Box3D

PRED_COLOUR, TRUTH_COLOUR, TEXT_COLOUR = (255, 64, 64), (64, 220, 64), (255, 255, 0)
PANEL_EDGE = 256  # a 2-D panel's target edge in pixels
TILE_EDGE = 128  # a mosaic tile's target edge in pixels
MAX_TILES = 16
HEADER = 14  # the mosaic's legend strip, in pixels
WINDOW_PERCENTILES = (1.0, 99.0)  # a volume's grey levels shown, whatever its units (HU, MR signal, [0, 1])

Rect = tuple[int, int, int, int]


def _draw(draw: ImageDraw.ImageDraw, rect: Rect, colour: tuple[int, int, int], text: str | None) -> None:
    draw.rectangle(rect, outline=colour, width=2)
    if text:
        draw.text((rect[0] + 2, max(rect[1] - 11, 0)), text, fill=colour)


def _grey_rgb(grey: np.ndarray, scale: int) -> Image.Image:
    rgb = Image.fromarray((np.clip(grey, 0, 1) * 255).astype(np.uint8)).convert("RGB")
    return rgb.resize((rgb.width * scale, rgb.height * scale), Image.Resampling.NEAREST)


def _panel(image: np.ndarray, boxes: list[Box], colour: tuple[int, int, int], title: str, scale: int) -> Image.Image:
    rgb = _grey_rgb(image[0] if image.ndim == 3 else image, scale)
    draw = ImageDraw.Draw(rgb)
    for box in boxes:
        rect = (box.min_col * scale, box.min_row * scale, box.max_col * scale - 1, box.max_row * scale - 1)
        _draw(draw, rect, colour, box.label if title == "truth" else f"{box.label} {box.probability:.2f}")
    draw.text((3, 2), title, fill=TEXT_COLOUR)
    return rgb


def overlay(image: np.ndarray, predicted: list[Box], truth: list[Box] | None = None) -> Image.Image:
    """The prediction panel of a 2-D image `(C, H, W)`, and the truth panel beside it when truth is given."""
    scale = max(1, PANEL_EDGE // max(image.shape[-2:]))
    panels = [_panel(image, predicted, PRED_COLOUR, "prediction", scale)]
    if truth is not None:
        panels.insert(0, _panel(image, truth, TRUTH_COLOUR, "truth", scale))
    out = Image.new("RGB", (sum(p.width for p in panels), panels[0].height))
    for i, panel in enumerate(panels):
        out.paste(panel, (i * panel.width, 0))
    return out


def mosaic_slices(depth: int, boxes: Sequence[Box3D], max_tiles: int = MAX_TILES) -> list[int]:
    """Which z slices a mosaic shows, ascending: the central slice of each box (in the order given, up to
    `max_tiles`), then slices spread evenly over the boxes' z range — over all `depth` slices when there are no
    boxes — to fill at most `max_tiles`."""
    centres = list(dict.fromkeys((b.min_z + b.max_z - 1) // 2 for b in boxes))[:max_tiles]
    low, high = (min(b.min_z for b in boxes), max(b.max_z for b in boxes)) if boxes else (0, depth)
    room = min(max_tiles - len(centres), high - low)
    spread = np.linspace(low, high - 1, num=room).round().astype(int).tolist() if room > 0 else []
    return sorted(set(centres) | set(spread))


def _display_range(grey: np.ndarray) -> tuple[float, float]:
    low, high = (float(v) for v in np.percentile(grey, WINDOW_PERCENTILES))
    return low, high if high > low else low + 1.0


def _tile(grey: np.ndarray, z: int, predicted: Sequence[Box3D], truth: Sequence[Box3D], scale: int) -> Image.Image:
    """Slice `z` of `grey` `(x, y, z)` shown with rows along y and columns along x."""
    rgb = _grey_rgb(grey[:, :, z].T, scale)
    draw = ImageDraw.Draw(rgb)
    for box in (b for b in truth if b.min_z <= z < b.max_z):
        rect = (box.min_x * scale - 2, box.min_y * scale - 2, box.max_x * scale + 1, box.max_y * scale + 1)
        _draw(draw, rect, TRUTH_COLOUR, None)
    for box in (b for b in predicted if b.min_z <= z < b.max_z):
        rect = (box.min_x * scale, box.min_y * scale, box.max_x * scale - 1, box.max_y * scale - 1)
        _draw(draw, rect, PRED_COLOUR, f"{box.probability:.2f}")
    draw.text((3, 2), f"z {z}", fill=TEXT_COLOUR)
    return rgb


def mosaic(
    volume: np.ndarray,
    predicted: Sequence[Box3D],
    truth: Sequence[Box3D] | None = None,
    slices: Sequence[int] | None = None,
) -> Image.Image:
    """Tiles of the z `slices` (default `mosaic_slices`) of `volume` `(C, x, y, z)`, row by row under a legend."""
    grey = volume[0]
    chosen = list(slices) if slices is not None else mosaic_slices(grey.shape[2], [*predicted, *(truth or [])])
    low, high = _display_range(grey)
    grey = (grey - low) / (high - low)
    scale = max(1, TILE_EDGE // max(grey.shape[:2]))
    tiles = [_tile(grey, z, predicted, truth or [], scale) for z in chosen]
    width, height = grey.shape[0] * scale, grey.shape[1] * scale
    columns = max(1, math.ceil(math.sqrt(len(tiles))))
    rows = max(1, math.ceil(len(tiles) / columns))
    out = Image.new("RGB", (columns * width, HEADER + rows * height))
    draw = ImageDraw.Draw(out)
    draw.text((3, 1), "prediction", fill=PRED_COLOUR)
    if truth is not None:
        draw.text((80, 1), "truth", fill=TRUTH_COLOUR)
    for i, tile in enumerate(tiles):
        out.paste(tile, ((i % columns) * width, HEADER + (i // columns) * height))
    return out
