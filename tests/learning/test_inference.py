"""`infer`: a padded forward pass or MONAI's sliding window, on real (tiny) MONAI networks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tclearn.errors import ConfigError, DataError
from tclearn.learning.data import Task
from tclearn.learning.inference import DEFAULT_ROI_EDGE, infer, size_multiple, window
from tclearn.learning.models import ModelConfig, Standardized, build_model

UNET_3D = ModelConfig(arch="unet", spatial_dims=3, options={"channels": [4, 8], "strides": [2], "num_res_units": 0})


@pytest.fixture
def unet_3d() -> nn.Module:
    torch.manual_seed(0)
    return build_model(UNET_3D)


def _count_windows(model: nn.Module) -> list[tuple[int, ...]]:
    """Records the input shape of every call of the network inside the standardising wrapper."""
    assert isinstance(model, Standardized)
    calls: list[tuple[int, ...]] = []
    model.net.register_forward_hook(lambda _m, args, _out: calls.append(tuple(args[0].shape)))
    return calls


def test_a_volume_bigger_than_the_window_is_slid_over(unet_3d: nn.Module) -> None:
    x = torch.rand(1, 1, 24, 20, 28)
    calls = _count_windows(unet_3d)
    out = infer(unet_3d, x, roi_size=(16, 16, 16), overlap=0.25, sw_batch_size=4, device="cpu")
    assert out.shape == (1, 1, 24, 20, 28) and out.dtype == torch.float32
    # 16-voxel windows every 12 voxels (overlap 0.25): two per axis, 8 windows in two passes of 4.
    assert calls == [(4, 1, 16, 16, 16), (4, 1, 16, 16, 16)]
    assert torch.isfinite(out).all()


def test_one_window_over_the_whole_volume_is_a_plain_forward(unet_3d: nn.Module) -> None:
    x = torch.rand(2, 1, 16, 16, 16) * 100.0 - 20.0  # any units: the model standardises
    calls = _count_windows(unet_3d)
    out = infer(unet_3d, x, roi_size=(16, 16, 16), device="cpu")
    assert len(calls) == 1  # through MONAI's sliding window, one window per volume
    with torch.no_grad():
        expected = unet_3d.eval()(x)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


def test_windows_see_the_whole_volume_standardised(unet_3d: nn.Module) -> None:
    """A bright region in one window must not change how another window is standardised: the statistics are
    the whole volume's, so sliding over a volume matches sliding over its standardised copy."""
    x = torch.rand(1, 1, 24, 24, 24)
    x[..., :8, :8, :8] += 50.0
    standardised = (x - x.mean()) / x.std()
    out = infer(unet_3d, x, roi_size=(16, 16, 16), device="cpu")
    assert isinstance(unet_3d, Standardized)
    expected = infer(unet_3d.net, standardised, roi_size=(16, 16, 16), device="cpu")  # the bare network
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)


def test_2d_pads_to_the_network_multiple_and_crops_back() -> None:
    torch.manual_seed(0)
    model = build_model({"arch": "unet", "options": {"channels": [4, 8], "strides": [2]}})
    even = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(infer(model, even, device="cpu"), model.eval()(even))
    assert infer(model, torch.rand(1, 1, 30, 27), device="cpu").shape == (1, 1, 30, 27)
    calls = _count_windows(model)
    assert infer(model, torch.rand(1, 1, 40, 24), roi_size=(16, 16), device="cpu").shape == (1, 1, 40, 24)
    assert len(calls) > 1 and all(c[2:] == (16, 16) for c in calls)  # larger than the window: slid over


def test_classifiers_take_the_whole_input_and_the_mode_is_restored() -> None:
    model = build_model({"arch": "densenet121", "spatial_dims": 3, "out_channels": 3})
    model.train()
    out = infer(model, torch.rand(2, 1, 32, 32, 32), device="cpu", task=Task.CLASSIFICATION)
    assert out.shape == (2, 3) and model.training


@pytest.mark.parametrize(
    ("spatial", "roi", "multiple", "expected"),
    [
        ((24, 20, 28), None, 16, (32, 32, 32)),  # a small volume is one window, rounded up to the multiple
        ((300, 40, 17), None, 16, (DEFAULT_ROI_EDGE, 48, 32)),  # capped
        ((300, 40, 17), None, 64, (64, 64, 64)),
        ((24, 20, 28), (16, 16, 8), 8, (16, 16, 8)),
        ((64, 64), None, 16, None),  # 2-D: one padded pass
        ((64, 64), (64, 64), 16, None),
        ((64, 80), (64, 64), 16, (64, 64)),
    ],
)
def test_window(
    spatial: tuple[int, ...], roi: tuple[int, ...] | None, multiple: int, expected: tuple[int, ...] | None
) -> None:
    assert window(spatial, roi, multiple) == expected


@pytest.mark.parametrize("roi", [(16, 16), (16, 16, 12), (16, 0, 16)])
def test_a_bad_window_is_refused(roi: tuple[int, ...]) -> None:
    with pytest.raises(ConfigError, match=r"roi_size .* must hold 3 positive multiples of 16"):
        window((32, 32, 32), roi, 16)


def test_bad_arguments(unet_3d: nn.Module) -> None:
    with pytest.raises(ConfigError, match="overlap"):
        infer(unet_3d, torch.rand(1, 1, 8, 8, 8), overlap=1.0)
    with pytest.raises(ConfigError, match="sw_batch_size"):
        infer(unet_3d, torch.rand(1, 1, 8, 8, 8), sw_batch_size=0)
    with pytest.raises(DataError, match="2 or 3 spatial axes"):
        infer(unet_3d, torch.rand(1, 8, 8))
    with pytest.raises(ConfigError, match="does not fit inputs"):
        infer(unet_3d, torch.rand(1, 3, 8, 8, 8), device="cpu")  # three channels for a one-channel network


def test_size_multiple() -> None:
    assert size_multiple(UNET_3D) == 2
    assert size_multiple(ModelConfig(arch="unet", options={"channels": [4, 8, 8, 8], "strides": [2, 2, 2]})) == 8
    assert size_multiple(ModelConfig(arch="segresnet")) == 4
    assert size_multiple(ModelConfig(arch="basic_unet")) == 16
    assert size_multiple(ModelConfig(arch="densenet121", out_channels=2)) == 1
