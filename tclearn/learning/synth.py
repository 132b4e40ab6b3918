"""A synthetic coalition: hospitals with their own domain shift, and a global test set G.

Images come from MONAI's `create_test_image_2d` (bright discs on a noisy background, the disc mask as the
segmentation). Each hospital has a `HospitalProfile` — intensity scale and offset, contrast, noise, disc
size and count, and the share of images that contain any disc (class balance) — so that a model trained
on one hospital sees only one corner of the data. G mixes every hospital's domain in equal parts. (Image
networks standardise each image, which removes the gain-and-offset part of the shift: docs/learning.md.)

Layout: `OUT/<hospital>/{train,test}/{images,masks}`, `OUT/global/{images,masks}` and `OUT/coalition.json`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from monai.data.synthetic import create_test_image_2d
from PIL import Image

from tclearn.errors import ConfigError

GLOBAL = "global"


@dataclass(frozen=True)
class HospitalProfile:
    """How one hospital's scanner and population look."""

    intensity_scale: float = 1.0
    intensity_offset: float = 0.0
    contrast: float = 1.0
    noise: float = 0.1
    radius_min: int = 4
    radius_max: int = 8
    objects: int = 3
    positive_fraction: float = 0.9

    def __post_init__(self) -> None:
        if not 0 < self.radius_min <= self.radius_max:
            raise ConfigError(f"radius_min {self.radius_min} must be > 0 and <= radius_max {self.radius_max}")
        if self.objects < 1:
            raise ConfigError(f"objects must be >= 1, got {self.objects}")
        if not 0.0 <= self.positive_fraction <= 1.0:
            raise ConfigError(f"positive_fraction must be in [0, 1], got {self.positive_fraction}")
        if not 0.0 < self.noise <= 1.0:
            raise ConfigError(f"noise must be in (0, 1], got {self.noise}")


# Deliberately far apart, as scanners and populations differ: bright vs dim vs washed-out low contrast; little
# vs much noise; many tiny discs vs few large ones; different shares of positive cases. (Contrast is never
# inverted: a polarity flip is another modality, not another scanner.)
BASE_PROFILES: tuple[HospitalProfile, ...] = (
    HospitalProfile(1.0, 0.0, 1.0, 0.05, 2, 5, 5, 0.95),
    HospitalProfile(0.45, 0.05, 0.7, 0.30, 7, 12, 2, 0.70),
    HospitalProfile(0.8, 0.2, 0.25, 0.15, 4, 8, 3, 0.85),  # washed out: findings barely above background
    HospitalProfile(0.6, 0.35, 0.5, 0.20, 3, 10, 4, 0.60),
)


def profile_for(index: int, seed: int = 0) -> HospitalProfile:
    """The profile of hospital `index` (0-based): the base table first, then seeded random draws."""
    if index < len(BASE_PROFILES):
        return BASE_PROFILES[index]
    rng = np.random.default_rng(seed * 1000 + index)
    r_min = int(rng.integers(2, 7))
    return HospitalProfile(
        intensity_scale=float(rng.uniform(0.4, 1.0)),
        intensity_offset=float(rng.uniform(0.0, 0.3)),
        contrast=float(rng.uniform(0.5, 1.5)),
        noise=float(rng.uniform(0.05, 0.3)),
        radius_min=r_min,
        radius_max=r_min + int(rng.integers(2, 7)),
        objects=int(rng.integers(1, 6)),
        positive_fraction=float(rng.uniform(0.6, 1.0)),
    )


def make_sample(profile: HospitalProfile, size: int, rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    """One (image, mask) pair as uint8 arrays `(size, size)`; the mask is 0 or 255."""
    positive = rng.random_sample() < profile.positive_fraction
    image, labels = create_test_image_2d(
        size,
        size,
        num_objs=profile.objects,
        rad_max=profile.radius_max,
        rad_min=profile.radius_min,
        noise_max=profile.noise,
        num_seg_classes=1,
        random_state=rng,
    )
    if not positive:
        # The same background noise as around the discs of a positive image, without the discs.
        image = rng.uniform(0, profile.noise, size=(size, size))
        labels = np.zeros_like(labels)
    shifted = profile.intensity_offset + profile.intensity_scale * (0.5 + profile.contrast * (image - 0.5))
    pixels = np.clip(np.round(np.clip(shifted, 0.0, 1.0) * 255), 0, 255).astype(np.uint8)
    return pixels, ((labels > 0) * 255).astype(np.uint8)


def _write(folder: Path, name: str, image: np.ndarray, mask: np.ndarray) -> None:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(folder / "images" / f"{name}.png")
    Image.fromarray(mask).save(folder / "masks" / f"{name}.png")


def hospital_name(index: int) -> str:
    return f"hospital-{index + 1}"


def check_counts(hospitals: int, train: int, test: int, global_size: int) -> None:
    """A synthetic coalition needs at least one hospital and one sample in every set."""
    if hospitals < 1:
        raise ConfigError(f"hospitals must be >= 1, got {hospitals}")
    if min(train, test, global_size) < 1:
        raise ConfigError(f"train ({train}), test ({test}) and global ({global_size}) must each be >= 1")


def synth_coalition(
    out: str | Path,
    hospitals: int = 3,
    train: int = 32,
    test: int = 8,
    global_size: int = 48,
    size: int = 64,
    seed: int = 0,
) -> dict[str, object]:
    """Write a synthetic coalition under `out`; returns (and writes) its description."""
    check_counts(hospitals, train, test, global_size)
    if size < 16:
        raise ConfigError(f"size must be >= 16 pixels, got {size}")
    root = Path(out)
    profiles = [profile_for(i, seed) for i in range(hospitals)]
    for index, profile in enumerate(profiles):
        if size <= 2 * profile.radius_max:
            raise ConfigError(
                f"size {size} is too small for {hospital_name(index)}'s findings (radius up to "
                f"{profile.radius_max}); use a size above {2 * profile.radius_max}"
            )
    for index, profile in enumerate(profiles):
        rng = np.random.RandomState(seed * 7919 + index)
        for split, count in (("train", train), ("test", test)):
            for k in range(count):
                _write(root / hospital_name(index) / split, f"{split}-{k:04d}", *make_sample(profile, size, rng))
    rng = np.random.RandomState(seed * 7919 + 999_983)
    for k in range(global_size):
        index = k % hospitals
        _write(root / GLOBAL, f"g-{k:04d}-h{index + 1}", *make_sample(profiles[index], size, rng))
    description: dict[str, object] = {
        "seed": seed,
        "size": [size, size],
        "train_per_hospital": train,
        "test_per_hospital": test,
        "global": global_size,
        "hospitals": {hospital_name(i): asdict(p) for i, p in enumerate(profiles)},
    }
    (root / "coalition.json").write_text(json.dumps(description, indent=2, sort_keys=True) + "\n")
    return description
