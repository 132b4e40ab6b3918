"""Feature scaling the coalition agrees on, computed from each site's sums without pooling any data.

A user's table holds raw measurements (creatinine in umol/l, counts in thousands, ratios near 0.01) with
outliers and strongly correlated columns. The encrypted model needs features of unit scale (its polynomial
sigmoid holds for logits in [-4, 4]) and its gradient steps need a well-conditioned problem, so the coalition
agrees once, at founding, on one `Scaling` that every member applies to its own rows before training and
inference (it travels in the model: `ModelSpec.scaling`, in the container and the candidates' metadata):

    x' = clip(W ((clip(x, low, high) - centre) / scale), -CLIP, CLIP)

- `low`, `high` (robust option): the sites' 1 % and 99 % quantiles, averaged weighted by their row counts,
  so one outlier does not set the scale; without it, no clipping of raw values;
- `centre`, `scale`: the pooled mean and standard deviation of the clipped values;
- `W` (optional): the symmetric whitening of the pooled correlation matrix (ZCA, with a ridge), so that
  correlated columns do not make the gradient steps overshoot;
- the final clip to +-CLIP bounds every feature, hence every logit (`model.weight_bounds`).

The round (`agree`): each site computes its statistics (`site_moments`: counts, sums, sums of squares, the
cross-products; and before that, for the robust option, its quantiles times its row count), encrypts them
under the public context, and the supervisor sums the sites' ciphertexts and decrypts only the sum
(`Supervisor.aggregate`, at least two sites). The combination is pure (`scaling_from`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tclearn.canonical import canonical_json
from tclearn.errors import DataError, HEError

CLIP = 4.0
"""Bound of every scaled feature."""
QUANTILE = 0.01
RIDGE = 0.1
"""Added to the correlation matrix's eigenvalues before whitening: directions of tiny variance are not blown
up into noise."""
DIGITS = 9
FLAT = 1e-6
"""A column's variance on [-1, 1] below which it is constant: CKKS noise in the moments is about 1e-7."""
NARROW = 1e-5
"""A column's clip bounds closer than this (a share of its magnitude) are one value: the bounds travel divided by
the magnitude, with CKKS noise of about 1e-7, so a constant column's bounds differ by noise, not by data."""


@dataclass(frozen=True)
class Scaling:
    """What every member applies to its raw feature rows (columns in this order)."""

    columns: tuple[str, ...]
    centre: tuple[float, ...]
    scale: tuple[float, ...]
    low: tuple[float, ...] | None = None  # raw clip bounds (the robust option); None: no clipping of raw values
    high: tuple[float, ...] | None = None
    whiten: tuple[tuple[float, ...], ...] | None = None  # W, (features x features)
    rows: int = 0  # training rows the statistics came from, all sites together
    sites: int = 0

    def __post_init__(self) -> None:
        d = len(self.columns)
        sizes = [len(self.centre), len(self.scale), *(len(v) for v in (self.low, self.high) if v is not None)]
        if d == 0 or any(size != d for size in sizes) or (self.low is None) != (self.high is None):
            raise HEError(f"a scaling of {d} columns needs {d} centres, scales and (both or no) clip bounds")
        if self.whiten is not None and (len(self.whiten) != d or any(len(row) != d for row in self.whiten)):
            raise HEError(f"a scaling of {d} columns needs a {d} x {d} whitening matrix")
        if not all(s > 0 for s in self.scale):
            raise HEError("every scale of a scaling must be positive")

    @property
    def features(self) -> int:
        return len(self.columns)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Raw rows (samples, features) as the model sees them."""
        if x.ndim != 2 or x.shape[1] != self.features:
            raise DataError(f"the scaling takes rows of {self.features} features, got shape {tuple(x.shape)}")
        raw = x if self.low is None else np.clip(x, self.low, self.high)
        z = (raw - np.asarray(self.centre)) / np.asarray(self.scale)
        if self.whiten is not None:
            z = z @ np.asarray(self.whiten)  # W is symmetric
        return np.clip(z, -CLIP, CLIP)

    def to_json(self) -> dict[str, Any]:
        return {
            "columns": list(self.columns),
            "centre": list(self.centre),
            "scale": list(self.scale),
            "low": None if self.low is None else list(self.low),
            "high": None if self.high is None else list(self.high),
            "whiten": None if self.whiten is None else [list(row) for row in self.whiten],
            "clip": CLIP,
            "rows": self.rows,
            "sites": self.sites,
        }

    @classmethod
    def from_json(cls, data: Any) -> Scaling:
        try:
            if float(data["clip"]) != CLIP:
                raise HEError(f"the scaling clips features at {data['clip']}; this node clips at {CLIP}")

            def floats(key: str) -> tuple[float, ...] | None:
                return None if data[key] is None else tuple(float(v) for v in data[key])

            whiten = data["whiten"]
            return cls(
                tuple(str(c) for c in data["columns"]),
                floats("centre") or (),
                floats("scale") or (),
                floats("low"),
                floats("high"),
                None if whiten is None else tuple(tuple(float(v) for v in row) for row in whiten),
                int(data["rows"]),
                int(data["sites"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise HEError(f"malformed feature scaling: {exc!r}") from None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(canonical_json(self.to_json())).hexdigest()


def _r(values: np.ndarray) -> tuple[float, ...]:
    """Values to DIGITS significant digits (a deterministic record; columns may be of any magnitude)."""
    return tuple(float(f"{float(v):.{DIGITS}g}") for v in np.ravel(values))


# --- one site's statistics (plain; each site computes its own) --------------------------------------------
# Every value a site sends must fit CKKS's range (|v| < 2^16) and keep its precision (about 1e-7 absolute), so
# the rounds never add raw sums (a sum of squared creatinine values is ~1e10): the first gives the rows and the
# columns' orders of magnitude, the second the clip bounds of the values divided by their magnitude, the third
# the moments of the values mapped onto [-1, 1] by those bounds, each weighted by the site's share of rows.

COUNT_UNIT = 1024.0
"""Row counts travel in units of 1024 rows (a site of a million rows is 977 units)."""
MAGNITUDE = 40
"""Orders of magnitude (powers of two) a column may span: 2^-40 to 2^40."""


def site_magnitudes(x: np.ndarray) -> np.ndarray:
    """Round 1: [rows / COUNT_UNIT, log2 of each column's 99th percentile of |value|] (summed over the sites)."""
    top = np.quantile(np.abs(x), 0.99, axis=0)
    return np.concatenate([[len(x) / COUNT_UNIT], np.clip(np.log2(top + 2.0**-MAGNITUDE), -MAGNITUDE, MAGNITUDE)])


def magnitudes_from(total: np.ndarray, sites: int) -> tuple[int, np.ndarray]:
    """(rows of all sites, each column's power-of-two divisor: 2^ceil(mean of the sites' log2 magnitudes))."""
    return round(total[0] * COUNT_UNIT), 2.0 ** np.ceil(total[1:] / sites)


def site_bounds(x: np.ndarray, rows: int, divisor: np.ndarray, quantile: float = QUANTILE) -> np.ndarray:
    """Round 2: the site's share of rows times [its `quantile` and 1 - `quantile` of x / divisor]."""
    share, scaled = len(x) / rows, x / divisor
    return share * np.concatenate([np.quantile(scaled, quantile, axis=0), np.quantile(scaled, 1 - quantile, axis=0)])


def bounds_from(total: np.ndarray, divisor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The clip bounds (raw units) from the sum of the sites' `site_bounds`."""
    d = len(divisor)
    return total[:d] * divisor, total[d:] * divisor


def unit_map(low: np.ndarray, high: np.ndarray, divisor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(middle, half-width) mapping [low, high] onto [-1, 1] (a column whose bounds are one value up to the noise,
    `NARROW`: its magnitude, so that its moments on [-1, 1] show whether it varies at all)."""
    half = (high - low) / 2
    return (high + low) / 2, np.where(half > NARROW * divisor, half, divisor)


def site_moments(x: np.ndarray, rows: int, middle: np.ndarray, half: np.ndarray, clip: bool) -> np.ndarray:
    """Round 3: the site's share of rows times [mean u (d), mean u^2 (d), mean u u^T (d x d, row-major)], with
    u = (x - middle) / half: the values (clipped to the bounds when `clip`) on [-1, 1]."""
    u = ((np.clip(x, middle - half, middle + half) if clip else x) - middle) / half
    share = len(x) / rows
    return share * np.concatenate([u.mean(0), (u**2).mean(0), (u.T @ u).ravel() / len(u)])


def scaling_from(
    columns: Sequence[str],
    moments: np.ndarray,
    middle: np.ndarray,
    half: np.ndarray,
    *,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
    whiten: bool = True,
    rows: int = 0,
    sites: int = 0,
    where: str = "every site's training table",
) -> Scaling:
    """The scaling from the pooled moments (the sum of the sites' `site_moments`): pure."""
    d = len(columns)
    if moments.shape != (2 * d + d * d,):
        raise HEError(f"moments of {d} columns hold {2 * d + d * d} values, got {moments.shape}")
    mean_u = moments[:d]
    variance_u = moments[d : 2 * d] - mean_u**2
    sd_u = np.sqrt(np.maximum(variance_u, 0.0))
    flat = [c for c, v in zip(columns, variance_u, strict=True) if v < FLAT]
    if flat:
        raise DataError(
            f"feature column(s) {', '.join(map(repr, flat))} hold the same value in every row of {where}: they "
            "carry no information; drop them from every table (and G)"
        )
    matrix = None
    if whiten:
        covariance = moments[2 * d :].reshape(d, d) - np.outer(mean_u, mean_u)
        correlation = covariance / np.outer(sd_u, sd_u)
        eigenvalues, vectors = np.linalg.eigh((correlation + correlation.T) / 2)
        matrix = tuple(_r(row) for row in (vectors / np.sqrt(np.maximum(eigenvalues, 0.0) + RIDGE)) @ vectors.T)
    return Scaling(
        tuple(columns),
        _r(middle + half * mean_u),
        _r(half * sd_u),
        None if bounds is None else _r(bounds[0]),
        None if bounds is None else _r(bounds[1]),
        matrix,
        rows,
        sites,
    )


def combine(
    columns: Sequence[str],
    tables: Sequence[np.ndarray],
    add: Callable[[list[np.ndarray], str], np.ndarray],
    *,
    robust: bool = True,
    whiten: bool = True,
    names: Sequence[str] = (),
) -> Scaling:
    """The three rounds over the sites' rows; `add` sums one statistic over the sites (in the clear, or encrypted
    with the supervisor decrypting only the sum: `duties.agree_scaling`); `names` name the tables in errors."""
    if len(tables) < 2:
        raise DataError(f"a coalition's scaling needs the statistics of at least 2 sites, got {len(tables)}")
    rows, divisor = magnitudes_from(add([site_magnitudes(x) for x in tables], "magnitudes"), len(tables))
    low, high = bounds_from(
        add([site_bounds(x, rows, divisor, QUANTILE if robust else 0.0) for x in tables], "bounds"), divisor
    )
    middle, half = unit_map(low, high, divisor)
    moments = add([site_moments(x, rows, middle, half, robust) for x in tables], "moments")
    return scaling_from(
        columns,
        moments,
        middle,
        half,
        bounds=(low, high) if robust else None,
        whiten=whiten,
        rows=rows,
        sites=len(tables),
        where=f"every site's training table ({', '.join(names)})" if names else "every site's training table",
    )


def pooled_scaling(
    columns: Sequence[str], tables: Sequence[np.ndarray], *, robust: bool = True, whiten: bool = True
) -> Scaling:
    """The same scaling summed in the clear (a reference, and for coalitions whose statistics may be pooled)."""
    return combine(columns, tables, lambda parts, _: np.sum(parts, axis=0), robust=robust, whiten=whiten)
