"""A member's local increment: train from the parent (the coalition's head) on local data.

`train_increment` never touches the parent; it returns the new weights and the `TrainingFacts` that go
into the candidate's metadata. The coalition's minimum batch size is enforced (and every step uses a full
batch: the last partial batch is dropped), seeds make runs repeatable, CUDA with AMP is used when present,
and a `CancelToken` stops a run between steps.
"""

from __future__ import annotations

import copy
import enum
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from monai.losses import DiceCELoss, DiceLoss
from rich.progress import Progress
from torch import nn

from tclearn.errors import ConfigError, DataError, TrainingCancelled
from tclearn.learning.augment import check_augment, check_patch, training_transform
from tclearn.learning.data import Task
from tclearn.learning.defaults import LOCAL_TRAINING
from tclearn.learning.dpsgd import PrivateSteps, plan
from tclearn.learning.privacy import DPConfig
from tclearn.learning.samples import Samples, augmented, batches, first_pair
from tclearn.learning.watermark import MarkKey, MarkLoss
from tclearn.records import Privacy, TrainingFacts

StateDict = dict[str, torch.Tensor]


class Optimiser(enum.StrEnum):
    ADAM = "adam"
    ADAMW = "adamw"
    SGD = "sgd"


class LossName(enum.StrEnum):
    DICE = "dice"
    DICE_CE = "dice_ce"
    CE = "ce"


@dataclass(frozen=True)
class TrainConfig:
    """How a member trains; `min_batch_size` is the coalition's policy, not the member's choice."""

    epochs: int = LOCAL_TRAINING.epochs
    batch_size: int = LOCAL_TRAINING.batch_size
    lr: float = LOCAL_TRAINING.lr
    optimiser: Optimiser = Optimiser.ADAM
    loss: LossName | None = None  # None: dice_ce for segmentation, ce for classification
    seed: int = LOCAL_TRAINING.seed
    min_batch_size: int = LOCAL_TRAINING.min_batch_size
    device: str = "auto"  # "auto" picks CUDA when present
    amp: bool = True  # mixed precision, on CUDA only
    progress: bool = False
    augment: tuple[str, ...] = ()  # MONAI random transforms by name (tclearn.learning.augment), seeded by `seed`
    patch: tuple[int, ...] | None = None  # train on random crops of this size; evaluate with a sliding window
    dp: DPConfig | None = None  # DP-SGD (tclearn.learning.dpsgd): Poisson batches of expected size `batch_size`
    marks: tuple[MarkKey, ...] = ()  # watermark keys written by `MarkLoss` (tclearn.learning.watermark)
    mark_strength: float = 1.0  # the mark loss's weight beside the task loss

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "min_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr!r}")
        try:
            object.__setattr__(self, "optimiser", Optimiser(self.optimiser))
            object.__setattr__(self, "loss", None if self.loss is None else LossName(self.loss))
        except ValueError as exc:
            raise ConfigError(f"bad training option: {exc}") from None
        object.__setattr__(self, "augment", check_augment(self.augment))
        object.__setattr__(self, "patch", check_patch(self.patch))
        if self.dp is not None and not isinstance(self.dp, DPConfig):
            raise ConfigError(f"dp must be a DPConfig or None, got {type(self.dp).__name__}")
        if self.batch_size < self.min_batch_size:
            raise ConfigError(
                f"batch size {self.batch_size} is below the coalition's minimum batch size {self.min_batch_size}"
            )


@dataclass(frozen=True)
class Increment:
    weights: StateDict
    facts: TrainingFacts
    privacy: Privacy | None = None  # trained with DP-SGD: the mechanism run and the epsilon it spends


class CancelToken:
    """Cooperative cancellation: another thread calls `cancel()`, training stops before its next step."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


def choose_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; expected auto, cpu or cuda[:N]") from None


def default_loss(task: Task) -> LossName:
    return LossName.DICE_CE if task is Task.SEGMENTATION else LossName.CE


def make_loss(task: Task, name: LossName | None, out_channels: int) -> nn.Module:
    """MONAI's Dice / DiceCE for segmentation (sigmoid for one channel, softmax otherwise); CE for classes;
    binary cross-entropy per label for multi-label."""
    if task is Task.MULTILABEL:
        if name not in (None, LossName.CE):
            raise ConfigError(f"loss {name!r} does not fit multi-label classification; use 'ce'")
        return nn.BCEWithLogitsLoss()
    if task is Task.CLASSIFICATION:
        if name not in (None, LossName.CE):
            raise ConfigError(f"loss {name!r} does not fit classification; use 'ce'")
        return nn.CrossEntropyLoss()
    name = name or LossName.DICE_CE
    if name is LossName.CE:
        raise ConfigError("loss 'ce' does not fit segmentation; use 'dice' or 'dice_ce'")
    sigmoid = out_channels == 1
    loss = DiceLoss if name is LossName.DICE else DiceCELoss
    return loss(sigmoid=sigmoid, softmax=not sigmoid, to_onehot_y=not sigmoid)


def make_optimiser(config: TrainConfig, params: Iterator[nn.Parameter]) -> torch.optim.Optimizer:
    match config.optimiser:
        case Optimiser.ADAM:
            return torch.optim.Adam(params, lr=config.lr)
        case Optimiser.ADAMW:
            return torch.optim.AdamW(params, lr=config.lr)
        case _:
            return torch.optim.SGD(params, lr=config.lr, momentum=0.9)


def forward_checked(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: Task) -> torch.Tensor:
    """`model(x)`, with a `ConfigError` instead of a torch traceback when model and data do not fit."""
    try:
        out = model(x)
    except RuntimeError as exc:
        raise ConfigError(f"the model does not fit inputs of shape {tuple(x.shape[1:])}: {str(exc)[:200]}") from None
    return check_output(out, y, task)


def check_output(out: torch.Tensor, y: torch.Tensor, task: Task) -> torch.Tensor:
    """`out`, or a `ConfigError` when the model's output does not fit `task`'s targets `y`."""
    if task is Task.SEGMENTATION:
        fits = out.shape[2:] == y.shape[2:]
    elif task is Task.MULTILABEL:
        fits = out.ndim == 2 and y.ndim == 2 and out.shape[1] == y.shape[1]
    else:
        fits = out.ndim == 2
    if not fits:
        raise ConfigError(
            f"model output {tuple(out.shape[1:])} does not fit {task.value} targets {tuple(y.shape[1:])}; "
            "is the architecture for this task?"
        )
    return out


@contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Callable[[], None]]:
    if not enabled:
        yield lambda: None
        return
    with Progress(transient=True) as bar:
        task = bar.add_task("training", total=total)
        yield lambda: bar.advance(task)


def as_targets(y: torch.Tensor, task: Task) -> torch.Tensor:
    """Targets as the loss wants them: class indices as int64, masks and label vectors as float."""
    return y.long() if task is Task.CLASSIFICATION else y.float()


def train_increment(
    parent: nn.Module,
    data: Samples,
    config: TrainConfig,
    cancel: CancelToken | None = None,
    on_step: Callable[[int, int], None] | None = None,
    patients: Sequence[str] | None = None,
    admit: Callable[[Privacy], None] | None = None,
) -> Increment:
    """Train a copy of `parent` on `data`; the parent's weights are left as they were.

    `cancel` stops the run before its next step (`TrainingCancelled`); `on_step(done, total)` is called
    after every optimisation step (services report progress with it). With `config.dp` the run is DP-SGD
    (`tclearn.learning.dpsgd`): `patients` (one id per item of `data`) groups items for the patient unit, and
    `admit` sees the `Privacy` the increment will declare before any step (raise to refuse the run: the
    coalition's privacy policy).
    """
    if config.dp is not None:
        return _train_private(parent, data, config, patients, cancel, on_step, admit)
    if len(data) < config.batch_size:
        raise DataError(
            f"{len(data)} samples cannot fill one batch of {config.batch_size}; "
            "lower the batch size (not below the coalition's minimum) or add data"
        )
    device = choose_device(config.device)
    use_amp = config.amp and device.type == "cuda"
    steps_per_epoch = len(data) // config.batch_size  # drop the partial batch: no step on fewer samples
    source = _training_source(data, config)
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        shuffle = torch.Generator().manual_seed(config.seed)
        model = copy.deepcopy(parent).to(device)
        model.train()
        optimiser = make_optimiser(config, model.parameters())
        marks = MarkLoss(model, config.marks) if config.marks else None
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        loss_fn: nn.Module | None = None
        last = torch.zeros(())
        total = config.epochs * steps_per_epoch
        with _progress(config.progress, total) as advance:
            for _epoch in range(config.epochs):
                order = torch.randperm(len(data), generator=shuffle).tolist()
                for step, (xb, yb) in enumerate(batches(source, config.batch_size, order, drop_last=True)):
                    if cancel is not None and cancel.cancelled:
                        raise TrainingCancelled("training cancelled", steps=_epoch * steps_per_epoch + step)
                    x, y = xb.float().to(device), as_targets(yb, data.task).to(device)
                    optimiser.zero_grad(set_to_none=True)
                    amp = torch.autocast("cuda", dtype=torch.float16) if use_amp else nullcontext()
                    with amp:
                        if loss_fn is None:  # first step: check that model and data fit each other
                            out = forward_checked(model, x, y, data.task)
                            loss_fn = make_loss(data.task, config.loss, int(out.shape[1]))
                        else:
                            out = model(x)
                        last = loss_fn(out, y)
                    objective = last if marks is None else last + config.mark_strength * marks()
                    scaler.scale(objective).backward()
                    scaler.step(optimiser)
                    scaler.update()
                    advance()
                    if on_step is not None:
                        on_step(_epoch * steps_per_epoch + step + 1, total)
    weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return Increment(weights, _facts(data, config, total, started, device, use_amp, last))


def _training_source(data: Samples, config: TrainConfig) -> Samples:
    """`data` as training reads it: through the run's seeded augmentation, if any (images only)."""
    spatial_dims = first_pair(data)[0].dim() - 2
    transform = training_transform(
        config.augment, spatial_dims, data.task is Task.SEGMENTATION, config.seed, config.patch
    )
    return data if transform is None or spatial_dims < 1 else augmented(data, transform)


def _facts(
    data: Samples, config: TrainConfig, steps: int, started: float, device: torch.device, amp: bool, last: torch.Tensor
) -> TrainingFacts:
    return TrainingFacts(
        samples=len(data),
        epochs=config.epochs,
        batch_size=config.batch_size,
        optimiser=config.optimiser.value,
        lr=config.lr,
        seed=config.seed,
        loss=(config.loss or default_loss(data.task)).value,
        steps=steps,
        duration_s=round(time.perf_counter() - started, 4),
        device=str(device),
        amp=amp,
        final_loss=float(last.detach().cpu()),
        augmentation=config.augment,
        patch=config.patch,
    )


def _mark_step(model: nn.Module, config: TrainConfig) -> Callable[[], None]:
    """After each private step: one plain step of `mark_strength * MarkLoss` on the carrier, by its own optimiser.
    The mark loss reads no data, so the step is post-processing of a DP output and spends no privacy."""
    if not config.marks:
        return lambda: None
    marks = MarkLoss(model, config.marks)
    params = dict(model.named_parameters())
    carrier = [params[n] for n in dict.fromkeys(n for key in config.marks for n in key.carrier)]
    optimiser = make_optimiser(config, iter(carrier))

    def step() -> None:
        saved = [p.grad for p in carrier]  # the DP optimiser's own gradients stay as they were
        for p in carrier:
            p.grad = None
        (config.mark_strength * marks()).backward()
        optimiser.step()
        for p, grad in zip(carrier, saved, strict=True):
            p.grad = grad

    return step


def _train_private(
    parent: nn.Module,
    data: Samples,
    config: TrainConfig,
    patients: Sequence[str] | None,
    cancel: CancelToken | None,
    on_step: Callable[[int, int], None] | None,
    admit: Callable[[Privacy], None] | None,
) -> Increment:
    """`train_increment` with `config.dp` (`tclearn.learning.dpsgd`): every check before the first step, Poisson
    batches, float32 (no AMP); the same seed and `dp.secret_seed` give the same draws, noise and weights; the marks
    of `config.marks` written after each step (`_mark_step`)."""
    assert config.dp is not None
    device = choose_device(config.device)
    model = copy.deepcopy(parent).to(device)
    run = plan(model, data, config.dp, config.batch_size, config.epochs, patients)
    if admit is not None:
        admit(run.privacy())
    source = _training_source(data, config)
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model.train()
        x0, y0 = first_pair(source)
        with torch.no_grad():  # check that model and data fit each other before any step
            out = forward_checked(model, x0.float().to(device), as_targets(y0, data.task).to(device), data.task)
        loss_fn = make_loss(data.task, config.loss, int(out.shape[1]))
        optimiser = make_optimiser(config, (p for p in model.parameters() if p.requires_grad))
        steps = PrivateSteps(run, model, loss_fn, optimiser, config.batch_size, device)
        mark = _mark_step(model, config)
        last = torch.zeros(())
        with _progress(config.progress, run.steps) as advance:
            for step in range(run.steps):
                if cancel is not None and cancel.cancelled:
                    raise TrainingCancelled("training cancelled", steps=step)
                items, owners = steps.draw()
                x = y = None
                if items:
                    xb, yb = next(iter(batches(source, len(items), items)))
                    x, y = xb.float().to(device), as_targets(yb, data.task).to(device)
                loss = steps.step(x, y, owners)
                mark()
                last = last if loss is None else loss
                advance()
                if on_step is not None:
                    on_step(step + 1, run.steps)
    weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return Increment(weights, _facts(data, config, run.steps, started, device, False, last), run.privacy())
