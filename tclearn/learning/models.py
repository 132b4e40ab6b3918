"""The model zoo: MONAI networks by name, a validated config, and a stable architecture hash.

A `ModelConfig` is what model metadata records (`to_dict`), and `arch_hash` ties it to the exact layout of
the weights (parameter names and shapes), so validators can refuse a candidate whose weights do not fit
the coalition's architecture.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from monai.networks import nets
from torch import nn

from tclearn.canonical import canonical_hash
from tclearn.errors import ConfigError
from tclearn.learning.data import Task


class Arch(enum.StrEnum):
    UNET = "unet"
    BASIC_UNET = "basic_unet"
    ATTENTION_UNET = "attention_unet"
    SEGRESNET = "segresnet"
    DENSENET121 = "densenet121"
    RESNET18 = "resnet18"
    RESNET34 = "resnet34"
    RESNET50 = "resnet50"
    FULLY_CONNECTED = "fully_connected"  # tabular (CSV) features


SEGMENTATION = frozenset({Arch.UNET, Arch.BASIC_UNET, Arch.ATTENTION_UNET, Arch.SEGRESNET})

# Small defaults: coalition members often train on CPUs. Every key here is an allowed option.
DEFAULT_OPTIONS: dict[Arch, dict[str, Any]] = {
    Arch.UNET: {"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1},
    Arch.BASIC_UNET: {"features": [8, 8, 16, 32, 64, 8]},
    Arch.ATTENTION_UNET: {"channels": [8, 16, 32], "strides": [2, 2]},
    Arch.SEGRESNET: {"init_filters": 8, "blocks_down": [1, 2, 2], "blocks_up": [1, 1]},
    Arch.DENSENET121: {"init_features": 16, "growth_rate": 8},
    Arch.RESNET18: {},
    Arch.RESNET34: {},
    Arch.RESNET50: {},
    Arch.FULLY_CONNECTED: {"hidden_channels": [32, 16], "dropout": 0.0},
}

# The normalisation layers an image network may be built with (option `norm`; absent: the network's own default).
# DP-SGD needs a norm that sees one sample at a time (instance, group): BatchNorm mixes the samples of a batch.
# MONAI's factories take one group count for every layer, which a 1-channel output layer cannot divide: a group norm
# is built as BatchNorm and replaced layer by layer (`renormed`), as is every norm of AttentionUnet (no norm argument).
NORMS: dict[str, Any] = {"batch": "batch", "instance": ("instance", {"affine": True}), "group": "batch"}
NORM_ARCHS = frozenset(set(Arch) - {Arch.FULLY_CONNECTED})

_INT_LISTS = {"channels", "strides", "features", "blocks_down", "blocks_up", "hidden_channels"}
_INTS = {"num_res_units", "init_filters", "init_features", "growth_rate"}


def _check_option(arch: Arch, key: str, value: Any) -> Any:
    if key in _INT_LISTS:
        if not isinstance(value, list | tuple) or not value:
            raise ConfigError(f"{arch}: option {key!r} must be a non-empty list of integers, got {value!r}")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
            raise ConfigError(f"{arch}: option {key!r} must hold positive integers, got {value!r}")
        return [int(v) for v in value]
    if key in _INTS:
        minimum = 0 if key == "num_res_units" else 1
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ConfigError(f"{arch}: option {key!r} must be an integer >= {minimum}, got {value!r}")
        return value
    if key == "norm":
        if value not in NORMS:
            raise ConfigError(f"{arch}: option 'norm' must be one of {', '.join(NORMS)}, got {value!r}")
        return value
    if key == "dropout":
        if not isinstance(value, int | float) or not 0.0 <= float(value) < 1.0:
            raise ConfigError(f"{arch}: option 'dropout' must be in [0, 1), got {value!r}")
        return float(value)
    return value


@dataclass(frozen=True)
class ModelConfig:
    """Which network, for what shapes; `options` are the arch's own keyword arguments."""

    arch: Arch
    spatial_dims: int = 2
    in_channels: int = 1
    out_channels: int = 1
    options: Mapping[str, Any] = field(default_factory=dict)
    # Each image standardised (zero mean, unit variance per channel) inside the model; None: on for image networks.
    standardize: bool | None = None
    # A classifier whose outputs are independent labels (each 0 or 1), not one class among `out_channels`.
    multilabel: bool = False

    def __post_init__(self) -> None:
        try:
            arch = Arch(self.arch)
        except ValueError:
            raise ConfigError(
                f"unknown architecture {self.arch!r}; expected one of {', '.join(a.value for a in Arch)}"
            ) from None
        object.__setattr__(self, "arch", arch)
        if self.standardize is None:
            object.__setattr__(self, "standardize", arch is not Arch.FULLY_CONNECTED)
        elif self.standardize and arch is Arch.FULLY_CONNECTED:
            raise ConfigError(f"{arch}: standardize is for images; scale tabular features before training")
        dims = (1,) if arch is Arch.FULLY_CONNECTED else (2, 3)
        if self.spatial_dims not in dims:
            raise ConfigError(f"{arch}: spatial_dims must be one of {dims}, got {self.spatial_dims!r}")
        for name in ("in_channels", "out_channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{arch}: {name} must be a positive integer, got {value!r}")
        if self.multilabel and (arch in SEGMENTATION or arch is Arch.FULLY_CONNECTED):
            raise ConfigError(f"{arch}: multilabel is for image classifiers (densenet121, resnet*)")
        if arch not in SEGMENTATION and not self.multilabel and self.out_channels < 2:
            raise ConfigError(f"{arch}: out_channels is the number of classes and must be >= 2")
        allowed = DEFAULT_OPTIONS[arch]
        unknown = sorted(set(self.options) - set(allowed) - ({"norm"} if arch in NORM_ARCHS else set()))
        if unknown:
            raise ConfigError(
                f"{arch}: unknown option(s) {', '.join(unknown)}; allowed: {', '.join(allowed) or 'none'}"
            )
        merged = {**allowed, **{k: _check_option(arch, k, v) for k, v in self.options.items()}}
        if "strides" in merged and len(merged["strides"]) != len(merged["channels"]) - 1:
            raise ConfigError(
                f"{arch}: strides {merged['strides']} must have one entry fewer than channels {merged['channels']}"
            )
        if arch is Arch.BASIC_UNET and len(merged["features"]) != 6:
            raise ConfigError(f"{arch}: features must have 6 entries, got {merged['features']}")
        object.__setattr__(self, "options", merged)

    @property
    def task(self) -> Task:
        if self.multilabel:
            return Task.MULTILABEL
        return Task.SEGMENTATION if self.arch in SEGMENTATION else Task.CLASSIFICATION

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch.value,
            "spatial_dims": self.spatial_dims,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "options": dict(self.options),
            "standardize": self.standardize,
            **({"multilabel": True} if self.multilabel else {}),  # absent when false: older hashes stay as they were
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        if not isinstance(data, Mapping):
            raise ConfigError(f"a model config must be a mapping, got {type(data).__name__}")
        if "arch" not in data:
            raise ConfigError("a model config needs an 'arch' key")
        unknown = sorted(
            set(data) - {"arch", "spatial_dims", "in_channels", "out_channels", "options", "standardize", "multilabel"}
        )
        if unknown:
            raise ConfigError(f"unknown model config key(s) {', '.join(unknown)}")
        arch = str(data["arch"])
        default_dims = 1 if arch == Arch.FULLY_CONNECTED.value else 2
        return cls(
            arch=arch,  # type: ignore[arg-type]  # validated to Arch in __post_init__
            spatial_dims=data.get("spatial_dims", default_dims),
            in_channels=data.get("in_channels", 1),
            out_channels=data.get("out_channels", 1 if arch in {a.value for a in SEGMENTATION} else 2),
            options=dict(data.get("options", {})),
            standardize=data.get("standardize"),
            multilabel=bool(data.get("multilabel", False)),
        )


def standardize(x: torch.Tensor) -> torch.Tensor:
    """Each image of the batch `(N, C, *spatial)` at zero mean and unit variance per channel."""
    dims = tuple(range(2, x.dim()))
    centred = x - x.mean(dim=dims, keepdim=True)
    return centred / x.std(dim=dims, keepdim=True).clamp_min(1e-6)


class Standardized(nn.Module):
    """Standardises each image — zero mean, unit variance per channel, as MONAI's `NormalizeIntensity` does —
    before `net`. Inside the model, so training, validation and prediction always agree, and a scanner's gain
    and offset drop out before the first layer. (Sliding-window inference standardises the whole image once
    and slides `net`, so each window sees the image's statistics, not its own: `inference.py`.)"""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(standardize(x))


def build_model(config: ModelConfig | Mapping[str, Any]) -> nn.Module:
    """A freshly initialised MONAI network for `config` (wrapped in `Standardized` when it standardises)."""
    cfg = config if isinstance(config, ModelConfig) else ModelConfig.from_dict(config)
    net = _network(cfg)
    return Standardized(net) if cfg.standardize else net


def renormed(net: nn.Module, norm: str, dims: int) -> nn.Module:
    """`net` with every BatchNorm layer replaced by `norm` over the same channels (for networks whose builder
    has no norm argument); a group norm takes the largest of 8, 4, 2, 1 groups that divides the channels."""
    if norm == "batch":
        return net
    for name, module in list(net.named_modules()):
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            c = module.num_features
            new: nn.Module = (
                nn.GroupNorm(next(g for g in (8, 4, 2, 1) if c % g == 0), c)
                if norm == "group"
                else (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)[dims - 1](c, affine=True)
            )
            parent_name, _, child = name.rpartition(".")
            setattr(net.get_submodule(parent_name), child, new)
    return net


def _network(cfg: ModelConfig) -> nn.Module:
    net = _built(cfg)
    return renormed(net, cfg.options["norm"], cfg.spatial_dims) if "norm" in cfg.options else net


def _built(cfg: ModelConfig) -> nn.Module:
    o, dims, c_in, c_out = cfg.options, cfg.spatial_dims, cfg.in_channels, cfg.out_channels
    norm = {"norm": NORMS[o["norm"]]} if "norm" in o else {}  # absent: the builder's default, as before
    try:
        match cfg.arch:
            case Arch.UNET:
                return nets.UNet(
                    dims, c_in, c_out, o["channels"], o["strides"], num_res_units=o["num_res_units"], **norm
                )
            case Arch.BASIC_UNET:
                return nets.BasicUNet(dims, c_in, c_out, features=o["features"], **norm)
            case Arch.ATTENTION_UNET:  # BatchNorm built in: `renormed` replaces it
                return nets.AttentionUnet(dims, c_in, c_out, o["channels"], o["strides"])
            case Arch.SEGRESNET:
                return nets.SegResNet(
                    dims,
                    o["init_filters"],
                    c_in,
                    c_out,
                    blocks_down=tuple(o["blocks_down"]),
                    blocks_up=tuple(o["blocks_up"]),
                    **norm,
                )
            case Arch.DENSENET121:
                return nets.DenseNet121(
                    spatial_dims=dims,
                    in_channels=c_in,
                    out_channels=c_out,
                    init_features=o["init_features"],
                    growth_rate=o["growth_rate"],
                    **norm,
                )
            case Arch.RESNET18 | Arch.RESNET34 | Arch.RESNET50:
                factory = getattr(nets, cfg.arch.value)
                model: nn.Module = factory(spatial_dims=dims, n_input_channels=c_in, num_classes=c_out, **norm)
                return model
            case Arch.FULLY_CONNECTED:
                return nets.FullyConnectedNet(c_in, c_out, o["hidden_channels"], dropout=o["dropout"] or None)
    except (TypeError, ValueError, AssertionError) as exc:
        raise ConfigError(f"{cfg.arch}: cannot build the network: {exc}") from None
    raise ConfigError(f"no builder for architecture {cfg.arch!r}")  # pragma: no cover


def arch_hash(config: ModelConfig, model: nn.Module | None = None) -> str:
    """sha256 over the config and the weight layout (names, shapes); stable across runs and machines."""
    net = model if model is not None else build_model(config)
    layout = [[name, list(t.shape), str(t.dtype)] for name, t in net.state_dict().items()]
    return canonical_hash({"config": config.to_dict(), "layout": layout})
