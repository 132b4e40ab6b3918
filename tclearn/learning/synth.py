"""A synthetic coalition where no hospital suffices alone, in 2-D (PNG) or 3-D (NIfTI), from one generator.

Every case is drawn in N dimensions with NumPy, in Hounsfield units, as a CT scanner would see it: a body of
soft tissue with a smooth texture in air, contrast-filled vessels (bright tubes that are *not* findings), and
the findings — ellipsoids a little denser than the tissue around them, whose mask is the segmentation. Each
hospital has a `HospitalProfile` with two halves:

- its **case mix** — finding sizes, counts, shapes, contrast and the region they lie in, and the share of
  cases with any finding (class balance) — so that each hospital sees a different part of the disease (one
  only small faint findings high in the body, another only large dense ones low down, ...), with larger
  findings a little denser (correlated features) and a few outlier cases drawn from anywhere;
- its **scanner** — calibration gain and offset, noise, blur and resolution (block-averaged detector cells).

The global test set G draws its cases from every hospital's case mix and scanner in equal parts.

Stored as a hospital's archive would hold them: 3-D volumes as int16 NIfTI in (miscalibrated) HU with a
per-site spacing in the affine, masks as uint8 NIfTI; 2-D images as 8-bit PNGs through a soft-tissue window.
Layout: `OUT/<hospital>/{train,test}/{images,masks}`, `OUT/global/{images,masks}` and `OUT/coalition.json`,
which records per site what a loader needs (`modality`, `window`, `dims`, `spacing`) besides the profile.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from tclearn.errors import ConfigError

GLOBAL = "global"
DIMS = (2, 3)
AIR_HU = -1000.0
TISSUE_HU = 40.0
VESSEL_HU = 200.0  # contrast-filled vessels: brighter than any finding, and never one
TEXTURE_HU = 6.0  # the tissue's own smooth inhomogeneity (organs, partial volumes)
HU_RANGE = (-1024, 3071)  # what a CT's int16 pixel data holds
WINDOW_HU = (-160.0, 240.0)  # the soft-tissue window: 2-D images are exported through it; 3-D loaders apply it
MIN_SIZE = {2: 32, 3: 24}
DEFAULT_SIZE = {2: 64, 3: 48}  # 48^3: a 3-D demo on 2 CPU cores finishes in minutes


@dataclass(frozen=True)
class HospitalProfile:
    """One hospital's case mix and scanner. Radii are fractions of the image side; contrast and noise are HU."""

    # case mix
    radius_min: float = 0.04
    radius_max: float = 0.10
    objects_min: int = 1
    objects_max: int = 3
    contrast_min: float = 30.0  # finding minus tissue, HU (larger findings are denser: see `draw_case`)
    contrast_max: float = 80.0
    elongation: float = 1.5  # the longest axis of a finding over its shortest, at most
    region: tuple[float, float] = (0.15, 0.85)  # where finding centres lie along the first axis (fraction)
    positive_fraction: float = 0.8  # class balance: the share of cases with any finding
    outlier_fraction: float = 0.05  # cases whose findings come from anywhere in the disease's range
    # scanner
    gain: float = 1.0  # calibration: stored = gain * HU + offset
    offset: float = 0.0
    noise: float = 10.0  # HU, standard deviation
    blur: float = 0.0  # point-spread sigma, pixels
    resolution: int = 1  # detector cell, pixels (block-averaged): 2 halves the resolution
    spacing: float = 1.0  # mm per pixel (voxel side), written into NIfTI affines

    def __post_init__(self) -> None:
        if not 0 < self.radius_min <= self.radius_max <= 0.3:
            raise ConfigError(
                f"radius_min {self.radius_min} must be > 0 and <= radius_max {self.radius_max} <= 0.3 (of the side)"
            )
        if not 1 <= self.objects_min <= self.objects_max:
            raise ConfigError(f"objects_min {self.objects_min} must be >= 1 and <= objects_max {self.objects_max}")
        if not 0 < self.contrast_min <= self.contrast_max:
            raise ConfigError(f"contrast_min {self.contrast_min} must be > 0 and <= contrast_max {self.contrast_max}")
        if self.elongation < 1:
            raise ConfigError(f"elongation must be >= 1, got {self.elongation}")
        low, high = self.region
        if not 0 <= low < high <= 1:
            raise ConfigError(f"region {self.region} must be two fractions 0 <= low < high <= 1")
        for name in ("positive_fraction", "outlier_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not self.gain > 0:
            raise ConfigError(f"gain must be > 0, got {self.gain}")
        if self.noise < 0 or self.blur < 0:
            raise ConfigError(f"noise ({self.noise}) and blur ({self.blur}) must be >= 0")
        if self.resolution < 1:
            raise ConfigError(f"resolution must be >= 1 pixel, got {self.resolution}")
        if not self.spacing > 0:
            raise ConfigError(f"spacing must be > 0 mm, got {self.spacing}")


# Each hospital sees its own corner of the disease, on its own scanner. G draws from all of them.
BASE_PROFILES: tuple[HospitalProfile, ...] = (
    # a screening centre: small faint findings high in the body, many per case; a sharp, quiet scanner
    HospitalProfile(0.03, 0.06, 2, 4, 35.0, 55.0, 1.3, (0.1, 0.5), 0.9, 0.05, 1.0, 0.0, 6.0, 0.0, 1, 0.8),
    # a referral centre: large dense findings low in the body, one or two; an old noisy, blurry scanner
    HospitalProfile(0.08, 0.16, 1, 2, 50.0, 100.0, 1.3, (0.5, 0.9), 0.7, 0.1, 0.9, 30.0, 14.0, 1.0, 2, 1.2),
    # elongated findings low in the body, few positive cases; a miscalibrated, mid-noise scanner
    HospitalProfile(0.04, 0.08, 1, 3, 45.0, 75.0, 3.0, (0.55, 0.9), 0.5, 0.05, 1.1, -40.0, 12.0, 0.5, 1, 1.0),
    # mid-sized to large faint findings in the middle of the body; a mid-noise scanner
    HospitalProfile(0.07, 0.14, 1, 3, 30.0, 60.0, 1.6, (0.25, 0.6), 0.7, 0.05, 1.0, 10.0, 10.0, 0.5, 1, 1.0),
)
# Where any finding of the disease may lie and look like: outlier cases draw from it.
DISEASE = HospitalProfile(0.03, 0.18, 1, 3, 30.0, 110.0, 3.0, (0.1, 0.9))


def profile_for(index: int, seed: int = 0) -> HospitalProfile:
    """The profile of hospital `index` (0-based): the base table first, then seeded random draws."""
    if index < len(BASE_PROFILES):
        return BASE_PROFILES[index]
    rng = np.random.default_rng(seed * 1000 + index)
    r_min = float(rng.uniform(0.03, 0.1))
    c_min = float(rng.uniform(20, 60))
    low = float(rng.uniform(0.1, 0.5))
    o_min = int(rng.integers(1, 3))
    return HospitalProfile(
        radius_min=round(r_min, 3),
        radius_max=round(r_min + float(rng.uniform(0.02, 0.08)), 3),
        objects_min=o_min,
        objects_max=o_min + int(rng.integers(0, 3)),
        contrast_min=round(c_min, 1),
        contrast_max=round(c_min + float(rng.uniform(10, 50)), 1),
        elongation=round(float(rng.uniform(1.0, 3.0)), 2),
        region=(round(low, 2), round(low + float(rng.uniform(0.3, 0.9 - low)), 2)),
        positive_fraction=round(float(rng.uniform(0.5, 0.95)), 2),
        gain=round(float(rng.uniform(0.9, 1.1)), 3),
        offset=round(float(rng.uniform(-40, 40)), 1),
        noise=round(float(rng.uniform(5, 20)), 1),
        blur=round(float(rng.uniform(0, 1)), 2),
        resolution=int(rng.integers(1, 3)),
        spacing=round(float(rng.uniform(0.7, 1.3)), 2),
    )


def _rotation(rng: np.random.Generator, dims: int) -> np.ndarray:
    """A random rotation of `dims`-space (QR of a Gaussian matrix)."""
    q, r = np.linalg.qr(rng.normal(size=(dims, dims)))
    return q * np.sign(np.diag(r))


def ellipsoid(shape: tuple[int, ...], centre: np.ndarray, radii: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """A boolean mask of the ellipsoid with `radii` (pixels) along the rows of `rotation`, around `centre`."""
    grid = np.indices(shape, dtype=np.float32).reshape(len(shape), -1) - centre[:, None]
    local = rotation @ grid
    inside = ((local / radii[:, None]) ** 2).sum(axis=0) <= 1.0
    return inside.reshape(shape)


def _tube(shape: tuple[int, ...], start: np.ndarray, end: np.ndarray, radius: float) -> np.ndarray:
    """A boolean mask of the pixels within `radius` of the segment `start`-`end` (a vessel)."""
    grid = np.indices(shape, dtype=np.float32).reshape(len(shape), -1)
    axis = end - start
    t = np.clip(((grid - start[:, None]).T @ axis) / float(axis @ axis), 0.0, 1.0)
    nearest = start[:, None] + axis[:, None] * t[None, :]
    return (((grid - nearest) ** 2).sum(axis=0) <= radius**2).reshape(shape)


def draw_findings(
    mix: HospitalProfile, shape: tuple[int, ...], rng: np.random.Generator
) -> list[tuple[np.ndarray, float]]:
    """The findings of one positive case: (mask, contrast in HU) each, from the case mix `mix`."""
    side, dims = min(shape), len(shape)
    findings: list[tuple[np.ndarray, float]] = []
    for _ in range(int(rng.integers(mix.objects_min, mix.objects_max + 1))):
        t = float(rng.uniform())  # where the finding lies in the mix's size range
        radius = side * (mix.radius_min + t * (mix.radius_max - mix.radius_min))
        stretch = rng.uniform(1.0, mix.elongation, size=dims)
        radii = np.maximum(radius * stretch / np.prod(stretch) ** (1 / dims), 1.0)
        centre = np.array(
            [rng.uniform(mix.region[0], mix.region[1]) * shape[0]] + [rng.uniform(0.25, 0.75) * n for n in shape[1:]]
        )
        # larger findings are denser (correlated features), with case-to-case spread
        contrast = mix.contrast_min + (mix.contrast_max - mix.contrast_min) * (0.6 * t + 0.4 * float(rng.uniform()))
        findings.append((ellipsoid(shape, centre, radii, _rotation(rng, dims)), contrast))
    return findings


def anatomy(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """The body in HU: a soft-tissue ellipsoid with a smooth texture in air, crossed by bright vessels."""
    dims = len(shape)
    centre = np.array(shape, dtype=np.float32) / 2 + rng.uniform(-0.03, 0.03, size=dims) * np.array(shape)
    body = ellipsoid(shape, centre, np.array(shape) * rng.uniform(0.44, 0.49, size=dims), np.eye(dims))
    texture = ndimage.gaussian_filter(rng.normal(size=shape), sigma=min(shape) / 10)
    texture *= TEXTURE_HU / max(float(texture.std()), 1e-6)
    hu = np.where(body, TISSUE_HU + texture, AIR_HU)
    for _ in range(int(rng.integers(1, 4))):
        ends = rng.uniform(0.1, 0.9, size=(2, dims)) * np.array(shape)
        hu[_tube(shape, ends[0], ends[1], float(rng.uniform(0.6, 1.4)) * min(shape) / 48) & body] = VESSEL_HU
    return hu


def scanner(hu: np.ndarray, profile: HospitalProfile, rng: np.random.Generator) -> np.ndarray:
    """What the hospital's scanner stores for the true HU image: block-averaged, blurred, noisy, miscalibrated."""
    seen = hu
    if profile.resolution > 1:
        cell = (profile.resolution,) * hu.ndim
        seen = ndimage.uniform_filter(seen, size=cell, mode="nearest")
        coarse = tuple(slice(0, n, profile.resolution) for n in hu.shape)
        seen = np.repeat(seen[coarse], profile.resolution, axis=0)
        for axis in range(1, hu.ndim):
            seen = np.repeat(seen, profile.resolution, axis=axis)
        seen = seen[tuple(slice(0, n) for n in hu.shape)]
    if profile.blur > 0:
        seen = ndimage.gaussian_filter(seen, sigma=profile.blur)
    seen = seen + rng.normal(0.0, profile.noise, size=hu.shape)
    return profile.gain * seen + profile.offset


def draw_case(
    profile: HospitalProfile, shape: tuple[int, ...], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One case of `profile`'s hospital: (stored intensities in HU as float, boolean finding mask)."""
    hu = anatomy(shape, rng)
    mask = np.zeros(shape, dtype=bool)
    if rng.uniform() < profile.positive_fraction:
        mix = DISEASE if rng.uniform() < profile.outlier_fraction else profile
        for finding, contrast in draw_findings(mix, shape, rng):
            finding &= hu > AIR_HU  # findings lie in the body
            hu[finding & (hu < VESSEL_HU)] += contrast
            mask |= finding
    return scanner(hu, profile, rng), mask


def to_png(stored: np.ndarray) -> np.ndarray:
    """A 2-D image as an 8-bit display image through the soft-tissue window."""
    low, high = WINDOW_HU
    return np.round(np.clip((stored - low) / (high - low), 0.0, 1.0) * 255).astype(np.uint8)


def to_int16(stored: np.ndarray) -> np.ndarray:
    """A volume as a CT stores it: int16 HU, clipped to the scanner's range."""
    return np.clip(np.round(stored), *HU_RANGE).astype(np.int16)


def _write(folder: Path, name: str, stored: np.ndarray, mask: np.ndarray, spacing: float) -> None:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    if stored.ndim == 2:
        Image.fromarray(to_png(stored)).save(folder / "images" / f"{name}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "masks" / f"{name}.png")
        return
    import nibabel as nib  # only for 3-D

    affine = np.diag([spacing] * stored.ndim + [1.0])
    for kind, array in (("images", to_int16(stored)), ("masks", mask.astype(np.uint8))):
        image = nib.Nifti1Image(array, affine)
        image.header.set_xyzt_units("mm")
        nib.save(image, folder / kind / f"{name}.nii.gz")


def hospital_name(index: int) -> str:
    return f"hospital-{index + 1}"


def check_counts(hospitals: int, train: int, test: int, global_size: int) -> None:
    """A synthetic coalition needs at least one hospital and one sample in every set."""
    if hospitals < 1:
        raise ConfigError(f"hospitals must be >= 1, got {hospitals}")
    if min(train, test, global_size) < 1:
        raise ConfigError(f"train ({train}), test ({test}) and global ({global_size}) must each be >= 1")


def loader_record(profile: HospitalProfile, dims: int) -> dict[str, object]:
    """What a loader needs to read one site's files: modality, intensity window, dims and spacing."""
    if dims == 2:  # exported through the soft-tissue window already: 8-bit display values
        return {"modality": "ct", "dims": 2, "window": [0, 255], "units": "uint8", "spacing": [1.0, 1.0]}
    return {
        "modality": "ct",
        "dims": 3,
        "window": list(WINDOW_HU),
        "units": "HU",
        "spacing": [profile.spacing] * 3,
    }


def synth_coalition(
    out: str | Path,
    hospitals: int = 3,
    train: int = 32,
    test: int = 8,
    global_size: int = 48,
    size: int = 64,
    seed: int = 0,
    dims: int = 2,
) -> dict[str, object]:
    """Write a synthetic coalition under `out` (PNGs for `dims` 2, NIfTI volumes for 3); returns (and writes)
    its description."""
    check_counts(hospitals, train, test, global_size)
    if dims not in DIMS:
        raise ConfigError(f"dims must be 2 or 3, got {dims}")
    if size < MIN_SIZE[dims]:
        raise ConfigError(f"size must be >= {MIN_SIZE[dims]} pixels in {dims}-D, got {size}")
    root = Path(out)
    shape = (size,) * dims
    profiles = [profile_for(i, seed) for i in range(hospitals)]
    for index, profile in enumerate(profiles):
        rng = np.random.default_rng([seed, index])
        for split, count in (("train", train), ("test", test)):
            for k in range(count):
                stored, mask = draw_case(profile, shape, rng)
                _write(root / hospital_name(index) / split, f"{split}-{k:04d}", stored, mask, profile.spacing)
    rng = np.random.default_rng([seed, 999_983])
    for k in range(global_size):
        index = k % hospitals
        stored, mask = draw_case(profiles[index], shape, rng)
        _write(root / GLOBAL, f"g-{k:04d}-h{index + 1}", stored, mask, profiles[index].spacing)
    description: dict[str, object] = {
        "seed": seed,
        "dims": dims,
        "size": list(shape),
        "train_per_hospital": train,
        "test_per_hospital": test,
        "global": global_size,
        "hospitals": {hospital_name(i): asdict(p) for i, p in enumerate(profiles)},
        "sites": {hospital_name(i): loader_record(p, dims) for i, p in enumerate(profiles)},
    }
    (root / "coalition.json").write_text(json.dumps(description, indent=2, sort_keys=True) + "\n")
    return description
