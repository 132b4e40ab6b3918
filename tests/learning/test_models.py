"""Model factory: every architecture builds and runs; bad configs name the bad value; stable hashes."""

from __future__ import annotations

import pytest
import torch

from tclearn.errors import ConfigError
from tclearn.learning.data import Task
from tclearn.learning.dpsgd import incompatible_layers
from tclearn.learning.models import Arch, ModelConfig, arch_hash, build_model


@pytest.mark.parametrize("arch", [a for a in Arch if a is not Arch.FULLY_CONNECTED])
def test_every_image_arch_builds_and_runs_2d(arch: Arch) -> None:
    config = ModelConfig.from_dict({"arch": arch.value})
    out = build_model(config)(torch.zeros(2, 1, 32, 32))
    if config.task is Task.SEGMENTATION:
        assert tuple(out.shape) == (2, 1, 32, 32)
    else:
        assert tuple(out.shape) == (2, 2)


@pytest.mark.parametrize("arch", ["unet", "basic_unet", "segresnet", "attention_unet"])
def test_segmentation_3d(arch: str) -> None:
    model = build_model({"arch": arch, "spatial_dims": 3}).eval()
    assert tuple(model(torch.zeros(1, 1, 32, 32, 32)).shape) == (1, 1, 32, 32, 32)


def test_fully_connected_for_tables() -> None:
    model = build_model({"arch": "fully_connected", "in_channels": 5, "out_channels": 3})
    assert tuple(model(torch.zeros(4, 5)).shape) == (4, 3)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"arch": "vgg"}, "unknown architecture 'vgg'"),
        ({"arch": "unet", "spatial_dims": 4}, "spatial_dims"),
        ({"arch": "unet", "in_channels": 0}, "in_channels"),
        ({"arch": "unet", "options": {"depth": 3}}, "unknown option.*depth"),
        ({"arch": "unet", "options": {"channels": [8, 16], "strides": [2, 2]}}, "strides"),
        ({"arch": "unet", "options": {"channels": [8, -1]}}, "positive integers"),
        ({"arch": "resnet18", "out_channels": 1}, "out_channels"),
        ({"arch": "unet", "colour": "red"}, "colour"),
        ({"spatial_dims": 2}, "arch"),
        ({"arch": "unet", "options": {"norm": "layer"}}, "'norm' must be one of batch, instance, group"),
        ({"arch": "fully_connected", "options": {"norm": "group"}}, "unknown option.*norm"),
    ],
)
def test_bad_configs_name_the_value(config: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ModelConfig.from_dict(config)


def test_arch_hash_is_stable_and_sensitive() -> None:
    a = ModelConfig.from_dict({"arch": "unet"})
    assert arch_hash(a) == arch_hash(ModelConfig.from_dict(a.to_dict()))
    assert arch_hash(a) != arch_hash(ModelConfig.from_dict({"arch": "unet", "options": {"num_res_units": 2}}))
    assert len(arch_hash(a)) == 64


def test_image_networks_standardise_each_image_so_scanner_gain_and_offset_drop_out() -> None:
    model = build_model({"arch": "unet"})
    assert (
        ModelConfig(arch=Arch.UNET).standardize
        and not ModelConfig.from_dict({"arch": "fully_connected", "in_channels": 3}).standardize
    )
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), model(0.3 * x + 0.2), atol=1e-4)  # another scanner's gain and offset
        raw = build_model({"arch": "unet", "standardize": False})
        raw.load_state_dict({k.removeprefix("net."): v for k, v in model.state_dict().items()})
        assert not torch.allclose(raw(x), raw(0.3 * x + 0.2), atol=1e-2)
    assert arch_hash(ModelConfig(arch=Arch.UNET)) != arch_hash(ModelConfig(arch=Arch.UNET, standardize=False))
    with pytest.raises(ConfigError, match="standardize is for images"):
        ModelConfig.from_dict({"arch": "fully_connected", "in_channels": 3, "standardize": True})


@pytest.mark.parametrize("arch", [a for a in Arch if a is not Arch.FULLY_CONNECTED])
@pytest.mark.parametrize("norm", ["instance", "group"])
def test_norm_option_leaves_no_batchnorm_and_still_runs(arch: Arch, norm: str) -> None:
    config = ModelConfig.from_dict({"arch": arch.value, "options": {"norm": norm}})
    model = build_model(config)
    assert incompatible_layers(model) == []
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    out = model.train()(torch.zeros(2, 1, 64, 64))
    assert out.shape[0] == 2
    assert arch_hash(config) != arch_hash(ModelConfig.from_dict({"arch": arch.value}))


def test_norm_is_absent_from_the_config_unless_given() -> None:
    assert "norm" not in ModelConfig.from_dict({"arch": "densenet121"}).to_dict()["options"]
    assert ModelConfig.from_dict({"arch": "densenet121", "options": {"norm": "group"}}).options["norm"] == "group"


@pytest.mark.parametrize(
    ("arch", "dp_ready"),
    [
        ("unet", True),
        ("basic_unet", True),
        ("segresnet", True),
        ("attention_unet", False),
        ("densenet121", False),
        ("resnet18", False),
        ("fully_connected", True),
    ],
)
def test_which_archs_are_dp_ready_as_they_are(arch: str, dp_ready: bool) -> None:
    config = {"arch": arch, **({"in_channels": 4} if arch == "fully_connected" else {})}
    assert (incompatible_layers(build_model(config)) == []) is dp_ready
