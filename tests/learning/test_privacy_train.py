"""DP-SGD increments: the mechanism declared is the one run, repeatable, per-sample or per-patient, and refused
before any step when the network or delta cannot give the guarantee."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tclearn.errors import ConfigError, DataError, TrainingCancelled
from tclearn.learning.data import ImageData, Task, load_segmentation
from tclearn.learning.dpsgd import PrivateSteps, _hook_grads, _vmap_grads, check_dp_compatible, plan, unit_groups
from tclearn.learning.folders import read_patients
from tclearn.learning.models import ModelConfig, build_model
from tclearn.learning.privacy import DPConfig, Mechanism, PrivacyUnit, epsilon_spent, poisson_steps
from tclearn.learning.train import CancelToken, TrainConfig, make_loss, train_increment
from tclearn.records import Privacy

UNET = {"arch": "unet", "options": {"channels": [4, 8], "strides": [2]}}
DP = DPConfig(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-3, secret_seed=11)


@pytest.fixture(scope="module")
def data(small_coalition: Path) -> ImageData:
    return load_segmentation(small_coalition / "hospital-1" / "train")


def dp_config(**changes: object) -> TrainConfig:
    return TrainConfig(**{"epochs": 1, "batch_size": 2, "min_batch_size": 1, "seed": 3, "dp": DP, **changes})


def test_increment_declares_the_mechanism_it_ran(data: ImageData) -> None:
    parent = build_model(UNET)
    before = {k: v.clone() for k, v in parent.state_dict().items()}
    inc = train_increment(parent, data, dp_config(epochs=2))
    assert inc.privacy is not None
    p = inc.privacy
    assert (p.unit, p.units, p.sample_rate, p.steps) == ("sample", 8, 2 / 8, 2 * 4)
    assert inc.facts.steps == p.steps and inc.facts.batch_size == 2
    assert p.epsilon == epsilon_spent(Mechanism(p.noise_multiplier, p.sample_rate, p.steps), p.delta, p.accountant)
    assert all(torch.equal(before[k], v) for k, v in parent.state_dict().items())  # parent untouched
    assert any(not torch.equal(before[k], inc.weights[k]) for k in before)
    assert set(inc.weights) == set(before)  # no Opacus wrapper prefixes


def test_non_private_increment_has_no_privacy(data: ImageData) -> None:
    assert train_increment(build_model(UNET), data, TrainConfig(epochs=1, batch_size=4)).privacy is None


@pytest.mark.parametrize("per_sample", ["vmap", "hooks"])
def test_same_seeds_same_weights_other_secret_seed_other_noise(data: ImageData, per_sample: str) -> None:
    torch.manual_seed(0)
    parent = build_model(UNET)

    def weights(secret: int | None) -> dict[str, torch.Tensor]:
        dp = DPConfig(1.0, 1.0, 1e-3, per_sample=per_sample, secret_seed=secret)  # type: ignore[arg-type]
        return train_increment(parent, data, dp_config(dp=dp)).weights

    a, b = weights(5), weights(5)
    assert all(torch.equal(a[k], b[k]) for k in a)
    for other in (weights(6), weights(None)):
        assert any(not torch.equal(a[k], other[k]) for k in a)


def test_without_a_secret_seed_the_published_seed_does_not_replay_the_noise(data: ImageData) -> None:
    parent = build_model(UNET)
    dp = DPConfig(1.0, 1.0, 1e-3)
    a, b = (train_increment(parent, data, dp_config(dp=dp)).weights for _ in range(2))
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_vmap_and_opacus_hooks_give_the_per_sample_gradients_of_one_at_a_time(data: ImageData) -> None:
    torch.manual_seed(0)
    model = build_model(UNET)
    x, y = data.images[:3].float(), data.targets[:3].float()
    loss_fn = make_loss(Task.SEGMENTATION, None, 1)
    truth = []
    for i in range(3):
        model.zero_grad()
        loss_fn(model(x[i : i + 1]), y[i : i + 1]).backward()
        truth.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    expected = [torch.stack(g) for g in zip(*truth, strict=True)]
    for grads in (_vmap_grads(model, loss_fn)(x, y)[0], _hook_grads(model, loss_fn)(x, y)[0]):
        assert all(torch.allclose(g, e, atol=1e-6) for g, e in zip(grads, expected, strict=True))


def test_more_noise_moves_the_weights_further(data: ImageData) -> None:
    parent = build_model(UNET)
    start = parent.state_dict()

    def moved(noise: float) -> float:
        dp = DPConfig(noise, 1.0, 1e-3, secret_seed=1)
        w = train_increment(parent, data, dp_config(dp=dp, optimiser="sgd", lr=0.05)).weights
        return sum(float((w[k] - start[k]).norm()) for k in start if start[k].is_floating_point())

    assert moved(20.0) > 3 * moved(0.01)


def test_empty_poisson_samples_still_step(data: ImageData) -> None:
    # batch 1 of 8: each step draws nobody with probability (7/8)^8; secret seed 11's draws include such a step
    draws = torch.Generator().manual_seed(DP.secret_seed or 0)
    empty = [not bool((torch.rand(8, generator=draws) < 1 / 8).any()) for _ in range(8)]
    assert any(empty)
    inc = train_increment(build_model(UNET), data, dp_config(batch_size=1))
    assert inc.privacy is not None and inc.privacy.steps == 8


def test_batchnorm_network_is_refused_naming_the_layer(data: ImageData) -> None:
    net = build_model(ModelConfig("attention_unet", options={"channels": [4, 8], "strides": [2]}))
    with pytest.raises(ConfigError, match=r"net\.model\.0\.conv\.0\.adn\.N \(BatchNorm2d\).*norm='instance'"):
        train_increment(net, data, dp_config())


@pytest.mark.parametrize(
    ("arch", "options"),
    [
        ("attention_unet", {"channels": [4, 8], "strides": [2], "norm": "group"}),
        ("unet", {"channels": [4, 8], "strides": [2], "norm": "group"}),
        ("densenet121", {"norm": "instance"}),
        ("resnet18", {"norm": "group"}),
    ],
)
def test_norm_option_makes_the_network_dp_compatible(arch: str, options: dict) -> None:
    check_dp_compatible(build_model(ModelConfig(arch, out_channels=1 if "unet" in arch else 2, options=options)))


def test_delta_not_below_one_over_n_is_refused(data: ImageData) -> None:
    with pytest.raises(ConfigError, match=r"delta 0.2 is not below 1/N = 0.125 for N = 8"):
        train_increment(build_model(UNET), data, dp_config(dp=DPConfig(1.0, 1.0, 0.2)))


def test_patient_unit_clips_per_patient(data: ImageData) -> None:
    patients = [f"p{i // 2}" for i in range(len(data))]  # two images each: four patients
    dp = DPConfig(1.0, 1.0, 1e-3, unit=PrivacyUnit.PATIENT)
    inc = train_increment(build_model(UNET), data, dp_config(dp=dp), patients=patients)
    assert inc.privacy is not None
    assert (inc.privacy.unit, inc.privacy.units, inc.privacy.sample_rate, inc.privacy.steps) == ("patient", 4, 0.5, 2)
    assert unit_groups(data, PrivacyUnit.PATIENT, patients) == [[0, 1], [2, 3], [4, 5], [6, 7]]


def test_patient_unit_without_grouping_is_refused(data: ImageData) -> None:
    dp = DPConfig(1.0, 1.0, 1e-3, unit=PrivacyUnit.PATIENT)
    with pytest.raises(ConfigError, match=r"patients\.csv"):
        train_increment(build_model(UNET), data, dp_config(dp=dp))
    with pytest.raises(DataError, match="3 patient ids for 8 images"):
        train_increment(build_model(UNET), data, dp_config(dp=dp), patients=["a", "b", "c"])


def test_patients_csv_groups_images(tmp_path: Path) -> None:
    (tmp_path / "patients.csv").write_text("image,patient\nb,p1\na,p1\nc,p2\n")
    assert read_patients(tmp_path, ("a", "b", "c")) == ("p1", "p1", "p2")
    assert read_patients(tmp_path / "missing", ("a",)) is None
    with pytest.raises(DataError, match="no patient for image 'd'"):
        read_patients(tmp_path, ("a", "d"))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"noise_multiplier": 0.0}, "noise multiplier"),
        ({"max_grad_norm": -1.0}, "max_grad_norm"),
        ({"max_grad_norm": float("inf")}, "max_grad_norm"),
        ({"delta": 1.0}, "delta"),
        ({"accountant": "gdp"}, "accountant 'gdp'"),
        ({"unit": "hospital"}, "unit 'hospital'"),
        ({"per_sample": "ghost"}, "per_sample 'ghost'"),
        ({"secret_seed": -1}, "secret_seed"),
        ({"secret_seed": 1.5}, "secret_seed"),
    ],
)
def test_bad_dp_config(bad: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DPConfig(**{"noise_multiplier": 1.0, "max_grad_norm": 1.0, "delta": 1e-5, **bad})


@pytest.mark.parametrize(
    ("batch", "units", "epochs", "expected"), [(2, 8, 1, (0.25, 4)), (3, 10, 2, (0.3, 6)), (8, 8, 3, (1.0, 3))]
)
def test_poisson_steps(batch: int, units: int, epochs: int, expected: tuple[float, int]) -> None:
    assert poisson_steps(batch, units, epochs) == expected


def test_too_few_units_for_the_expected_batch() -> None:
    with pytest.raises(DataError, match="3 privacy units cannot fill an expected batch of 4"):
        poisson_steps(4, 3, 1)


def test_3d_unet_trains_with_dp_both_ways() -> None:
    # Opacus's report on MONAI 3-D segmentation networks (opacus#671): here both per-sample paths run
    gen = torch.Generator().manual_seed(0)
    masks = torch.zeros(4, 1, 16, 16, 16)
    for k in range(4):
        masks[k, 0, 4 + k : 9 + k, 5:10, 3:8] = 1
    data = ImageData(
        Task.SEGMENTATION, masks * 0.8 + 0.2 * torch.rand(masks.shape, generator=gen), masks, tuple("abcd")
    )
    for per_sample in ("vmap", "hooks"):
        dp = DPConfig(1.0, 1.0, 1e-2, per_sample=per_sample)  # type: ignore[arg-type]
        inc = train_increment(build_model({**UNET, "spatial_dims": 3}), data, dp_config(dp=dp))
        assert inc.privacy is not None and inc.privacy.steps == 2


def test_in_place_residuals_need_vmap(data: ImageData) -> None:
    net = build_model(ModelConfig("segresnet", options={"blocks_down": [1, 1], "blocks_up": [1]}))
    hooks = DPConfig(1.0, 1.0, 1e-3, per_sample="hooks")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"in-place operations.*per_sample='vmap'"):
        train_increment(net, data, dp_config(dp=hooks))
    assert train_increment(net, data, dp_config()).privacy is not None


def test_tabular_network_with_dropout_trains_with_dp() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(20, 5, generator=gen)
    table = ImageData(Task.CLASSIFICATION, x, (x[:, 0] > 0).long(), tuple(f"r{i}" for i in range(20)), ("no", "yes"))
    net = build_model(
        ModelConfig("fully_connected", spatial_dims=1, in_channels=5, out_channels=2, options={"dropout": 0.2})
    )
    inc = train_increment(net, table, dp_config(batch_size=4, dp=DPConfig(1.0, 1.0, 1e-2)))
    assert inc.privacy is not None and inc.privacy.units == 20 and inc.facts.loss == "ce"


@pytest.mark.parametrize(
    ("unit", "per_sample", "units"),
    [("sample", "vmap", 8), ("sample", "hooks", 8), ("patient", "vmap", 4), ("patient", "hooks", 4)],
)
def test_one_step_moves_the_weights_by_at_most_the_clipping_norm(
    data: ImageData, unit: str, per_sample: str, units: int
) -> None:
    # everyone drawn (rate 1), next to no noise, plain SGD of lr 1: the step is the mean of clipped unit gradients
    torch.manual_seed(0)
    model = build_model(UNET)
    clip = 1e-3
    dp = DPConfig(1e-9, clip, 1e-2, unit=unit, per_sample=per_sample, secret_seed=0)  # type: ignore[arg-type]
    patients = [f"p{i // 2}" for i in range(len(data))]
    run = plan(model, data, dp, units, 1, patients)
    assert run.rate == 1.0
    start = [p.detach().clone() for p in model.parameters()]
    loss_fn = make_loss(Task.SEGMENTATION, None, 1)
    steps = PrivateSteps(run, model, loss_fn, torch.optim.SGD(model.parameters(), lr=1.0), units, torch.device("cpu"))
    items, owners = steps.draw()
    assert items == list(range(8)) and len(set(owners)) == units
    steps.step(data.images.float(), data.targets.float(), owners)
    moved = torch.cat([(p.detach() - s).flatten() for p, s in zip(model.parameters(), start, strict=True)]).norm()
    assert 0 < float(moved) <= clip * 1.001


def test_cancellation_stops_a_private_run(data: ImageData) -> None:
    token = CancelToken()
    token.cancel()
    with pytest.raises(TrainingCancelled):
        train_increment(build_model(UNET), data, dp_config(), cancel=token)


def test_admit_sees_the_declared_privacy_and_can_refuse_before_any_step(data: ImageData) -> None:
    seen: list[Privacy] = []
    steps: list[int] = []
    inc = train_increment(build_model(UNET), data, dp_config(), admit=seen.append)
    assert seen == [inc.privacy]

    def refuse(privacy: Privacy) -> None:
        raise ConfigError(f"epsilon {privacy.epsilon:.2f} is over the cap")

    with pytest.raises(ConfigError, match="over the cap"):
        train_increment(build_model(UNET), data, dp_config(), admit=refuse, on_step=lambda done, _: steps.append(done))
    assert steps == []
