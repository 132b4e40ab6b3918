"""A synthetic multi-label coalition (seed 003): CT-like heads scored 0/1 on ten brain regions.

Each case is a head phantom in Hounsfield units — air, a bony skull, brain parenchyma — whose scored
hemisphere is divided into the ten regions ASPECTS reads (caudate, lentiform, internal capsule, insula,
M1-M6). A region holds a finding or not: a small hypodense blob (an early infarct, a few HU below the brain)
or a hyperdense one (a bleed, tens of HU above). The layout is stylised, not anatomy: in 3-D M1-M3 sit with
the deep regions on the ganglionic level and M4-M6 on a level above; in 2-D one slice holds all ten, the
cortical ones on a ring from front to back.

Hospitals differ as real sites do: how often each region is affected (prevalence per label), how many
findings are bleeds rather than infarcts and how strong they are, and their scanner (a calibration offset
in HU, noise, blur). G draws from every hospital in equal parts.

Files: 3-D volumes are int16 NIfTI in HU (`.nii.gz`, 224 mm field of view); 2-D slices are 8-bit PNG under
a brain window (level 40, width 120 HU), as pictures exported from a viewer are. Layout:
`OUT/<hospital>/{train,test}/{images/,labels.csv}`, `OUT/global/...` and `OUT/coalition.json`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image
from scipy import ndimage

from tclearn.errors import ConfigError
from tclearn.learning.multilabel import LABELS_CSV, write_label_table
from tclearn.learning.synth import GLOBAL, check_counts, hospital_name

REGIONS = ("caudate", "lentiform", "internal_capsule", "insula", "m1", "m2", "m3", "m4", "m5", "m6")

# Region centres as fractions of the brain's semi-axes, (z, y, x): z up, y from front (-1) to back (+1),
# x from the midline (0) out to the scored side (+1).
_GANGLIONIC, _SUPRAGANGLIONIC = -0.2, 0.45
CENTRES_3D = (
    (_GANGLIONIC, -0.40, 0.12),  # caudate
    (_GANGLIONIC, -0.10, 0.36),  # lentiform
    (_GANGLIONIC, 0.38, 0.15),  # internal capsule
    (_GANGLIONIC, 0.35, 0.60),  # insula
    (_GANGLIONIC, -0.70, 0.42),  # M1, front
    (_GANGLIONIC, 0.00, 0.84),  # M2, side
    (_GANGLIONIC, 0.72, 0.38),  # M3, back
    (_SUPRAGANGLIONIC, -0.50, 0.35),  # M4
    (_SUPRAGANGLIONIC, 0.00, 0.70),  # M5
    (_SUPRAGANGLIONIC, 0.50, 0.35),  # M6
)
# 2-D: deep regions inside, M1..M6 on a ring from front to back (M1, M4, M2, M5, M3, M6 as they project).
_RING = {
    name: np.deg2rad(angle)
    for name, angle in zip(("m1", "m4", "m2", "m5", "m3", "m6"), range(-75, 76, 30), strict=True)
}
CENTRES_2D = (
    (-0.38, 0.10),  # caudate
    (-0.02, 0.30),  # lentiform
    (0.36, 0.12),  # internal capsule
    (0.10, 0.55),  # insula
    *((0.80 * np.sin(_RING[m]), 0.80 * np.cos(_RING[m])) for m in ("m1", "m2", "m3", "m4", "m5", "m6")),
)

AIR_HU, BONE_HU, BRAIN_HU = -1000.0, 800.0, 32.0
WINDOW_LEVEL, WINDOW_WIDTH = 40.0, 120.0  # the brain window of the 2-D pictures
FIELD_OF_VIEW_MM = 224.0
DEFAULT_SIZE = {2: 64, 3: 32}


@dataclass(frozen=True)
class MultilabelProfile:
    """One hospital: its population (prevalence per region, kind and strength of findings) and scanner."""

    prevalence: tuple[float, ...] = (0.3,) * len(REGIONS)
    hyperdense_share: float = 0.3  # share of findings that are bleeds rather than infarcts
    hypodense_hu: float = 14.0  # how far an infarct lies below the brain
    hyperdense_hu: float = 40.0  # how far a bleed lies above it
    radius: tuple[float, float] = (0.05, 0.08)  # finding radius, as a fraction of the image side
    offset_hu: float = 0.0  # the scanner's calibration error
    noise_hu: float = 4.0
    blur: float = 0.0  # Gaussian blur, in voxels

    def __post_init__(self) -> None:
        if len(self.prevalence) != len(REGIONS) or not all(0.0 <= p <= 1.0 for p in self.prevalence):
            raise ConfigError(f"prevalence must hold {len(REGIONS)} values in [0, 1], got {self.prevalence}")
        if not 0.0 <= self.hyperdense_share <= 1.0:
            raise ConfigError(f"hyperdense_share must be in [0, 1], got {self.hyperdense_share}")
        if min(self.hypodense_hu, self.hyperdense_hu) <= 0:
            raise ConfigError("hypodense_hu and hyperdense_hu are magnitudes and must be > 0")
        if not 0 < self.radius[0] <= self.radius[1] <= 0.15:
            raise ConfigError(f"radius must be 0 < min <= max <= 0.15 of the image side, got {self.radius}")
        if self.noise_hu < 0 or self.blur < 0:
            raise ConfigError(f"noise_hu ({self.noise_hu}) and blur ({self.blur}) must be >= 0")


def _prevalence(deep: float, cortex: float, **region: float) -> tuple[float, ...]:
    values = [deep] * 4 + [cortex] * 6
    for name, value in region.items():
        values[REGIONS.index(name)] = value
    return tuple(values)


# Deliberately different sites: a stroke unit seeing cortical infarcts on a quiet scanner; a general hospital
# with deep findings, a miscalibrated noisy scanner and more bleeds; a trauma centre of mostly bleeds, few
# findings, a soft reconstruction kernel and an offset the other way.
BASE_PROFILES: tuple[MultilabelProfile, ...] = (
    MultilabelProfile(_prevalence(0.15, 0.45), 0.1, 14.0, 40.0, (0.05, 0.08), 0.0, 3.0, 0.0),
    MultilabelProfile(_prevalence(0.45, 0.15), 0.5, 10.0, 35.0, (0.04, 0.07), 12.0, 6.0, 0.5),
    MultilabelProfile(_prevalence(0.12, 0.12, insula=0.4, m2=0.4), 0.9, 12.0, 45.0, (0.06, 0.09), -8.0, 4.0, 0.8),
)


def profile_for(index: int, seed: int = 0) -> MultilabelProfile:
    """Hospital `index` (0-based): the base table first, then seeded random draws."""
    if index < len(BASE_PROFILES):
        return BASE_PROFILES[index]
    rng = np.random.default_rng(seed * 1000 + index)
    r_min = float(rng.uniform(0.04, 0.07))
    return MultilabelProfile(
        prevalence=tuple(float(p) for p in rng.uniform(0.05, 0.5, len(REGIONS))),
        hyperdense_share=float(rng.uniform(0.0, 1.0)),
        hypodense_hu=float(rng.uniform(8.0, 16.0)),
        hyperdense_hu=float(rng.uniform(30.0, 50.0)),
        radius=(r_min, r_min + float(rng.uniform(0.0, 0.03))),
        offset_hu=float(rng.uniform(-12.0, 12.0)),
        noise_hu=float(rng.uniform(2.0, 7.0)),
        blur=float(rng.uniform(0.0, 1.0)),
    )


def make_case(
    profile: MultilabelProfile, size: int, dims: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One head in HU (float32, `(size,) * dims`, axes (z,) y, x) and its 0/1 label per region (int)."""
    grid = np.stack(np.meshgrid(*[np.arange(size, dtype=np.float32)] * dims, indexing="ij"))
    centre = (size - 1) / 2 + rng.uniform(-1.0, 1.0, dims)
    head = np.array([0.40, 0.44, 0.36][-dims:]) * size * rng.uniform(0.94, 1.04)
    skull = max(1.0, 0.05 * size)
    brain = head - skull
    offsets = grid - centre.reshape((dims,) + (1,) * dims)
    inside_head = (np.square(offsets / head.reshape((dims,) + (1,) * dims)).sum(0)) <= 1.0
    inside_brain = (np.square(offsets / brain.reshape((dims,) + (1,) * dims)).sum(0)) <= 1.0
    hu = np.where(inside_head, BONE_HU, AIR_HU).astype(np.float32)
    hu[inside_brain] = BRAIN_HU
    labels = (rng.random(len(REGIONS)) < np.asarray(profile.prevalence)).astype(int)
    centres = CENTRES_3D if dims == 3 else CENTRES_2D
    for k in np.flatnonzero(labels):
        spot = centre + (np.asarray(centres[k]) + rng.uniform(-0.05, 0.05, dims)) * brain
        radius = size * rng.uniform(*profile.radius)
        distance = np.sqrt(np.square(grid - spot.reshape((dims,) + (1,) * dims)).sum(0))
        weight = np.clip(radius + 0.5 - distance, 0.0, 1.0) * inside_brain  # soft edge, one voxel wide
        bleed = rng.random() < profile.hyperdense_share
        hu += weight * (profile.hyperdense_hu if bleed else -profile.hypodense_hu) * rng.uniform(0.8, 1.2)
    if profile.blur > 0:
        hu = ndimage.gaussian_filter(hu, profile.blur)
    hu += profile.offset_hu + rng.normal(0.0, profile.noise_hu, hu.shape)
    return hu.astype(np.float32), labels


def window(hu: np.ndarray, level: float = WINDOW_LEVEL, width: float = WINDOW_WIDTH) -> np.ndarray:
    """HU to 8-bit grey values under a viewer's window."""
    return np.round(np.clip((hu - (level - width / 2)) / width, 0.0, 1.0) * 255).astype(np.uint8)


def _write_image(folder: Path, name: str, hu: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if hu.ndim == 2:
        Image.fromarray(window(hu)).save(folder / f"{name}.png")
        return
    voxels = np.clip(np.round(hu), -1024, 3071).astype(np.int16).transpose(2, 1, 0)  # (z, y, x) -> (x, y, z)
    spacing = FIELD_OF_VIEW_MM / hu.shape[0]
    image = nib.Nifti1Image(voxels, np.diag([spacing, spacing, spacing, 1.0]))
    image.header.set_xyzt_units("mm")
    nib.save(image, folder / f"{name}.nii.gz")


def _write_set(folder: Path, cases: list[tuple[str, np.ndarray, np.ndarray]]) -> None:
    for name, hu, _labels in cases:
        _write_image(folder / "images", name, hu)
    write_label_table(folder / LABELS_CSV, REGIONS, [(name, labels.tolist()) for name, _hu, labels in cases])


def loader_record(dims: int) -> dict[str, object]:
    """What a loader needs to read a site's files: 2-D pictures are 8-bit, already windowed; volumes are in HU."""
    if dims == 2:
        return {"modality": "ct", "dims": 2, "units": "uint8"}
    brain = [WINDOW_LEVEL - WINDOW_WIDTH / 2, WINDOW_LEVEL + WINDOW_WIDTH / 2]
    return {"modality": "ct", "dims": 3, "units": "HU", "window": brain}


def synth_multilabel(
    out: str | Path,
    hospitals: int = 3,
    train: int = 32,
    test: int = 8,
    global_size: int = 48,
    size: int | None = None,
    dims: int = 3,
    seed: int = 0,
) -> dict[str, object]:
    """Write a synthetic multi-label coalition under `out`; returns (and writes) its description.

    `size` is the side in voxels (default 32 in 3-D, 64 in 2-D); the same seed writes the same files."""
    check_counts(hospitals, train, test, global_size)
    if dims not in (2, 3):
        raise ConfigError(f"dims must be 2 or 3, got {dims}")
    side = DEFAULT_SIZE[dims] if size is None else size
    if side < 24:
        raise ConfigError(f"size must be >= 24 voxels to hold ten regions, got {side}")
    root = Path(out)
    profiles = [profile_for(i, seed) for i in range(hospitals)]
    for index, profile in enumerate(profiles):
        rng = np.random.default_rng([seed, index])
        for split, count in (("train", train), ("test", test)):
            cases = [(f"{split}-{k:04d}", *make_case(profile, side, dims, rng)) for k in range(count)]
            _write_set(root / hospital_name(index) / split, cases)
    rng = np.random.default_rng([seed, 999_983])
    cases = []
    for k in range(global_size):
        index = k % hospitals
        cases.append((f"g-{k:04d}-h{index + 1}", *make_case(profiles[index], side, dims, rng)))
    _write_set(root / GLOBAL, cases)
    description: dict[str, object] = {
        "task": "multilabel",
        "seed": seed,
        "dims": dims,
        "size": [side] * dims,
        "labels": list(REGIONS),
        "train_per_hospital": train,
        "test_per_hospital": test,
        "global": global_size,
        "hospitals": {hospital_name(i): asdict(p) for i, p in enumerate(profiles)},
        "sites": {hospital_name(i): loader_record(dims) for i in range(hospitals)},
    }
    (root / "coalition.json").write_text(json.dumps(description, indent=2, sort_keys=True) + "\n")
    return description
