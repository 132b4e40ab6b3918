"""DP-SGD for a local increment: per-unit clipped gradients, Gaussian noise, Poisson sampling (Opacus).

Each step draws every privacy unit (an image, or all of a patient's images) with probability q = batch_size / units;
per-sample gradients come from `torch.func.vmap` over the whole network (or Opacus's per-layer `GradSampleModule`),
a patient's images' gradients are summed before clipping, and Opacus's `DPOptimizer` clips each unit's gradient to
`max_grad_norm`, adds noise of `noise_multiplier * max_grad_norm` and divides by the expected batch. The draws
and the noise come from a secret seed (fresh from the OS unless `DPConfig.secret_seed` is given), never from
the training seed a candidate publishes: knowing it, anyone could replay the draws and subtract the noise. Every
step is taken, an empty sample too (noise alone), so the run is exactly the mechanism `Mechanism(noise_multiplier,
q, steps)` whose epsilon the `Privacy` record declares.
"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from tclearn.errors import ConfigError, DataError
from tclearn.learning.privacy import (
    DPConfig,
    Mechanism,
    PerSample,
    PrivacyUnit,
    check_delta,
    epsilon_spent,
    poisson_steps,
)
from tclearn.learning.samples import Samples
from tclearn.records import Privacy

# Layers whose output for one sample depends on the others in the batch (or that Opacus needs replaced).
_MIXING = (nn.modules.batchnorm._BatchNorm, nn.MultiheadAttention, nn.RNNBase)
PerSampleGrads = Callable[[torch.Tensor, torch.Tensor], tuple[list[torch.Tensor], torch.Tensor]]


def incompatible_layers(model: nn.Module) -> list[str]:
    """The layers that stop `model` from training with DP-SGD, as "path (Type)"."""
    found = []
    for name, module in model.named_modules():
        mixing = isinstance(module, _MIXING) or (
            isinstance(module, nn.modules.instancenorm._InstanceNorm) and module.track_running_stats
        )
        if mixing:
            found.append(f"{name or '(model)'} ({type(module).__name__})")
    return found


def check_dp_compatible(model: nn.Module) -> None:
    """`ConfigError` naming every layer that mixes samples of a batch (BatchNorm) or that Opacus cannot take."""
    found = incompatible_layers(model)
    if found:
        raise ConfigError(
            f"the network cannot train with differential privacy: {', '.join(found)} "
            f"{'mixes' if len(found) == 1 else 'mix'} the samples of a batch, so one sample's gradient is not its "
            "own; build it with the model option norm='instance' or norm='group' (docs/privacy.md lists the "
            "architectures)"
        )
    from opacus.validators import ModuleValidator

    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        raise ConfigError(f"Opacus cannot train this network with DP-SGD: {'; '.join(str(e) for e in errors)}")


def unit_groups(data: Samples, unit: PrivacyUnit, patients: Sequence[str] | None) -> list[list[int]]:
    """The item indices of each privacy unit: one item each, or all of a patient's items."""
    if unit is PrivacyUnit.SAMPLE:
        return [[i] for i in range(len(data))]
    if patients is None:
        raise ConfigError(
            "the patient privacy unit needs the images grouped by patient: put a patients.csv (image,patient) "
            "beside the images, or train with unit='sample'"
        )
    if len(patients) != len(data):
        raise DataError(f"{len(patients)} patient ids for {len(data)} images; give one patient per image")
    groups: dict[str, list[int]] = {}
    for index, patient in enumerate(patients):
        groups.setdefault(str(patient), []).append(index)
    return list(groups.values())


def _vmap_grads(model: nn.Module, loss_fn: nn.Module) -> PerSampleGrads:
    from torch.func import functional_call, grad_and_value, vmap

    names = [n for n, p in model.named_parameters() if p.requires_grad]

    def sample_loss(
        params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        out = functional_call(model, (params, buffers), (x.unsqueeze(0),))
        loss: torch.Tensor = loss_fn(out, y.unsqueeze(0))
        return loss

    per_sample = vmap(grad_and_value(sample_loss), in_dims=(None, None, 0, 0), randomness="different")

    def run(x: torch.Tensor, y: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
        try:
            grads, losses = per_sample(params, dict(model.named_buffers()), x, y)
        except RuntimeError as exc:  # an operation torch.func cannot batch (data-dependent control flow, ...)
            raise ConfigError(
                f"per-sample gradients by vmap failed on this network ({str(exc)[:200]}); try per_sample='hooks'"
            ) from None
        return [grads[n] for n in names], losses.mean().detach()

    return run


def _hook_grads(model: nn.Module, loss_fn: nn.Module) -> PerSampleGrads:
    from opacus import GradSampleModule

    for module in model.modules():  # Opacus's backward hooks refuse in-place activations (MONAI's LeakyReLU, ReLU)
        if getattr(module, "inplace", False) is True:
            module.inplace = False  # type: ignore[assignment]
    sampled = GradSampleModule(model, batch_first=True, loss_reduction="mean")
    params = [p for p in model.parameters() if p.requires_grad]

    def run(x: torch.Tensor, y: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        with warnings.catch_warnings():  # inputs need no gradient: the full backward hooks say so, harmlessly
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            try:
                loss = loss_fn(sampled(x), y)
                loss.backward()
            except RuntimeError as exc:
                if "inplace" not in str(exc):
                    raise
                raise ConfigError(
                    "Opacus's per-layer hooks cannot follow this network's in-place operations (a residual "
                    "`x += y` in its forward); train with per_sample='vmap'"
                ) from None
        grads = [p.grad_sample for p in params]  # type: ignore[attr-defined]
        unset = [name for name, p in model.named_parameters() if p.requires_grad and p.grad_sample is None]  # type: ignore[attr-defined]
        if unset:  # Opacus's issue #671 (MONAI 3-D networks): a parameter its hooks never saw
            raise ConfigError(
                f"Opacus's per-layer hooks computed no per-sample gradient for {', '.join(unset[:3])}; train with "
                "per_sample='vmap'"
            )
        for p in params:
            p.grad_sample = None  # type: ignore[attr-defined]
            p.grad = None
        return grads, loss.detach()

    return run


@dataclass(frozen=True)
class PrivateRun:
    """A DP-SGD run as planned before its first step: the privacy units, the mechanism and the epsilon it spends."""

    dp: DPConfig
    groups: tuple[tuple[int, ...], ...]  # the item indices of each privacy unit
    rate: float
    steps: int
    epsilon: float

    def privacy(self) -> Privacy:
        """The record a candidate declares: exactly the mechanism run."""
        return Privacy(
            mechanism="dp-sgd",
            accountant=self.dp.accountant.value,
            unit=self.dp.unit.value,
            noise_multiplier=float(self.dp.noise_multiplier),
            max_grad_norm=float(self.dp.max_grad_norm),
            sample_rate=self.rate,
            steps=self.steps,
            delta=float(self.dp.delta),
            epsilon=self.epsilon,
            units=len(self.groups),
        )


def plan(
    model: nn.Module, data: Samples, dp: DPConfig, batch_size: int, epochs: int, patients: Sequence[str] | None
) -> PrivateRun:
    """Check everything DP-SGD needs (the network's layers, the units, delta below 1/units, an accountable
    mechanism) and the epsilon the run will spend: a run that cannot give its guarantee fails before any step."""
    check_dp_compatible(model)
    groups = unit_groups(data, dp.unit, patients)
    check_delta(dp.delta, len(groups))
    rate, steps = poisson_steps(batch_size, len(groups), epochs)
    epsilon = epsilon_spent(Mechanism(dp.noise_multiplier, rate, steps), dp.delta, dp.accountant)
    return PrivateRun(dp, tuple(tuple(g) for g in groups), rate, steps, epsilon)


class PrivateSteps:
    """The steps of a `PrivateRun`: Poisson draws of units, per-sample gradients, per-patient sums, and Opacus's
    `DPOptimizer` (clipping, noise, division by the expected batch); draws and noise from `run.dp.secret_seed`."""

    def __init__(
        self,
        run: PrivateRun,
        model: nn.Module,
        loss_fn: nn.Module,
        optimiser: torch.optim.Optimizer,
        batch_size: int,
        device: torch.device,
    ) -> None:
        from opacus.optimizers import DPOptimizer

        seed = secrets.randbits(63) if run.dp.secret_seed is None else run.dp.secret_seed

        self.run, self.device = run, device
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.sampler = torch.Generator().manual_seed(seed)
        self.optimiser = DPOptimizer(
            optimiser,
            noise_multiplier=run.dp.noise_multiplier,
            max_grad_norm=run.dp.max_grad_norm,
            expected_batch_size=batch_size,
            loss_reduction="mean",  # the losses average over the batch; Opacus rescales to per-sample gradients
            generator=torch.Generator(device=device).manual_seed((seed + 1) % 2**63),
        )
        self.per_sample = (_vmap_grads if run.dp.per_sample is PerSample.VMAP else _hook_grads)(model, loss_fn)

    def draw(self) -> tuple[list[int], list[int]]:
        """The items of this step's Poisson sample, and each item's unit (its position among the units drawn)."""
        groups = self.run.groups
        chosen = (torch.rand(len(groups), generator=self.sampler) < self.run.rate).nonzero().flatten().tolist()
        items = [i for g in chosen for i in groups[g]]
        owners = [k for k, g in enumerate(chosen) for _ in groups[g]]
        return items, owners

    def step(self, x: torch.Tensor | None, y: torch.Tensor | None, owners: list[int]) -> torch.Tensor | None:
        """One DP-SGD step on the drawn items (`x` None: nobody drawn, the step adds noise alone, as the accountant
        assumes); the mean loss of the items, if any."""
        loss = None
        if x is None or y is None:
            grads = [p.new_zeros((0, *p.shape)) for p in self.params]
        else:
            grads, loss = self.per_sample(x, y)
            if self.run.dp.unit is PrivacyUnit.PATIENT:  # one gradient per patient: the sum of its images'
                owner = torch.tensor(owners, device=self.device)
                units = max(owners) + 1
                grads = [g.new_zeros((units, *g.shape[1:])).index_add_(0, owner, g) for g in grads]
        for p, g in zip(self.params, grads, strict=True):
            p.grad_sample = g  # type: ignore[attr-defined]  # what DPOptimizer clips
        self.optimiser.step()
        self.optimiser.zero_grad(set_to_none=True)
        return loss
