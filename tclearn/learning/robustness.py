"""The robustness report: a model's score on its test data as read and after JPEG 2000 coding at each ratio.

Every image is coded plane by plane (`coding.round_trip`) as it is read, so the report needs no copy of the
data; the achieved ratio (raw over coded bytes, summed over the set) is reported beside the asked one, since
a smooth image may code smaller than asked. `write_report` stores the JSON and a PNG curve (score against
ratio, log x axis).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tclearn.errors import ConfigError
from tclearn.learning.coding import check_ratio, coded_round_trip
from tclearn.learning.evaluate import evaluate, headline_metric
from tclearn.learning.samples import Pair, Samples, derived

REPORT_JSON, REPORT_PNG = "robustness.json", "robustness.png"


@dataclass(frozen=True)
class RatioScore:
    ratio: float
    achieved_ratio: float
    score: float
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Robustness:
    """The score on the data as read (`baseline`) and at each asked ratio."""

    metric: str
    baseline: RatioScore
    ratios: tuple[RatioScore, ...]

    def to_dict(self) -> dict[str, object]:
        return {"metric": self.metric, "baseline": asdict(self.baseline), "ratios": [asdict(r) for r in self.ratios]}


def parse_ratios(text: str) -> tuple[float, ...]:
    """`"1,10,20"` as ratios, each >= 1, in the order given; a `ConfigError` naming a bad one."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise ConfigError(f"--j2k-ratios needs comma-separated ratios >= 1, e.g. 1,10,20,40,64; got {text!r}")
    values = []
    for part in parts:
        try:
            values.append(check_ratio(float(part)))
        except ValueError:
            raise ConfigError(f"compression ratio must be a number >= 1 (1 = lossless), got {part!r}") from None
    return tuple(values)


class _Coded:
    """A per-item map coding each image at `ratio`, counting raw and coded bytes as it goes."""

    def __init__(self, ratio: float) -> None:
        self.ratio, self.raw, self.coded = ratio, 0, 0

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> Pair:
        image, raw, coded = coded_round_trip(x.detach().cpu().numpy(), self.ratio)
        self.raw += raw
        self.coded += coded
        return torch.from_numpy(image), y

    @property
    def achieved(self) -> float:
        return self.raw / self.coded if self.coded else float("nan")


def robustness(
    model: nn.Module,
    data: Samples,
    ratios: Sequence[float],
    batch_size: int = 16,
    roi_size: Sequence[int] | None = None,
) -> Robustness:
    """The model's score on `data` as read and at each of `ratios`."""
    model.eval()
    plain = evaluate(model, data, batch_size, roi_size=roi_size)
    scores = []
    for ratio in ratios:
        coder = _Coded(check_ratio(ratio))
        result = evaluate(model, derived(data, coder), batch_size, roi_size=roi_size)
        scores.append(RatioScore(ratio, round(coder.achieved, 3), result.score, dict(result.metrics)))
    baseline = RatioScore(1.0, 1.0, plain.score, dict(plain.metrics))
    return Robustness(headline_metric(data.task), baseline, tuple(scores))


def write_report(report: Robustness, folder: Path) -> tuple[Path, Path]:
    """`robustness.json` and `robustness.png` (score against ratio, log x) in `folder` (made if need be)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    json_path, png_path = folder / REPORT_JSON, folder / REPORT_PNG
    json_path.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    figure, axes = plt.subplots(figsize=(5, 3.5))
    xs = np.array([r.achieved_ratio if np.isfinite(r.achieved_ratio) else r.ratio for r in report.ratios])
    axes.plot(xs, [r.score for r in report.ratios], marker="o", label="JPEG 2000")
    axes.axhline(report.baseline.score, color="grey", linestyle="--", label="as read")
    axes.set_xscale("log")
    axes.set_xlabel("compression ratio (achieved)")
    axes.set_ylabel(report.metric)
    axes.legend()
    figure.tight_layout()
    figure.savefig(png_path, dpi=100)
    plt.close(figure)
    return json_path, png_path
