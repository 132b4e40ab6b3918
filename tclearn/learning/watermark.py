"""Weight watermarks (Uchida et al. 2017): a secret key's bits carried by the signs of random projections of a
model's weights — the coalition's watermark in every committed model, a hospital's fingerprint in each export.

A `MarkKey` names its *carrier* (weight tensors, flattened and joined into one vector `w` of `d` values) and holds a
32-byte secret, from which `bits` projection directions `x_i` (Gaussian, unit length) and the message bits `b_i`
are drawn. A model is read as `u_i = sqrt(d) * <x_i, w> / |w|`, bit `i` as `u_i > 0`. For a model that never saw the
key the `x_i` are independent of `w`, so each read bit is a fair coin, independently of the others, whatever the
model: the number of bits it gets wrong is Binomial(bits, 1/2) over the draw of the key. That is the p-value of a
reading (`Reading.p_value`) and the false-accusation bound of a trace (`threshold`).

Training carries a mark with `MarkLoss` — a hinge on `s_i * u_i` (`s_i` = +1 or -1 for the bit) up to the key's
margin, in units of the chance standard deviation of `u_i` — added to the task loss. The margin is what lets a
mark survive later changes: a change of the carrier of relative size `r` moves every `u_i` by about `N(0, r^2)`.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import torch
from torch import nn

from tclearn.errors import ConfigError, IntegrityError
from tclearn.records import SCHEMA, Record

StateDict = Mapping[str, torch.Tensor]
Purpose = Literal["coalition", "fingerprint"]

# Measured (bench/watermark.py): a carrier spread over many tensors costs a finished model least when a mark is
# written into it (an export: `minimum=MAX_CARRIER`), but costs a coalition that trains with the mark loss from its
# genesis on up to 26 Dice points: the coalition's watermark takes the largest tensor alone (`MIN_CARRIER`), written
# into the genesis (`stamp`). 64 and 128 bits at margin 2 survive fine-tuning, pruning and int8 with no error.
WATERMARK_BITS = 128
FINGERPRINT_BITS = 64
DEFAULT_BITS = WATERMARK_BITS
DEFAULT_MARGIN = 2.0  # in chance standard deviations of a projection
MIN_CARRIER = 4096  # the carrier takes the largest weight tensors until it holds this many values ...
MAX_CARRIER = 65536  # ... and never more (the projection is bits x d floats)
FALSE_ACCUSATION = 1e-6  # the bound a trace keeps: the chance of naming anyone for a model that carries no mark


@dataclass(frozen=True)
class MarkKey(Record):
    """A watermark's secret key: the carrier tensors (names and shapes), how many bits, the margin training aims at,
    and the 32-byte secret (hex) the projections and the message are drawn from."""

    KIND = "watermark key"

    purpose: Purpose
    carrier: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    bits: int
    secret: str
    margin: float = DEFAULT_MARGIN
    schema: int = SCHEMA

    def __post_init__(self) -> None:
        if not self.carrier or len(self.carrier) != len(self.shapes):
            raise ConfigError("a watermark key names one shape for each of its (one or more) carrier tensors")
        if not (isinstance(self.bits, int) and 16 <= self.bits <= 1024):
            raise ConfigError(f"a watermark carries 16 to 1024 bits, got {self.bits!r}")
        if self.bits > self.dim:
            raise ConfigError(f"a carrier of {self.dim} values cannot carry {self.bits} bits")
        if not (isinstance(self.margin, int | float) and 0 < self.margin <= 20):
            raise ConfigError(f"a watermark's margin must be in (0, 20], got {self.margin!r}")
        try:
            secret = bytes.fromhex(self.secret)
        except ValueError:
            secret = b""
        if len(secret) != 32:
            raise ConfigError("a watermark key's secret must be 32 bytes in hex (64 characters)")

    @property
    def dim(self) -> int:
        return sum(math.prod(s) for s in self.shapes)

    def _seed(self, what: bytes) -> int:
        return int.from_bytes(hashlib.sha256(bytes.fromhex(self.secret) + what).digest()[:8], "big") >> 1

    @cached_property
    def signs(self) -> torch.Tensor:
        """The message as +1 (bit 1) or -1 (bit 0), one per bit."""
        generator = torch.Generator().manual_seed(self._seed(b"message"))
        return torch.randint(0, 2, (self.bits,), generator=generator).double() * 2 - 1

    @cached_property
    def projection(self) -> torch.Tensor:
        """`bits` unit directions of the carrier's space, one per row (float32)."""
        generator = torch.Generator().manual_seed(self._seed(b"projection"))
        x = torch.randn(self.bits, self.dim, generator=generator)
        return x / x.norm(dim=1, keepdim=True)


def choose_carrier(weights: StateDict, minimum: int = MIN_CARRIER, maximum: int = MAX_CARRIER) -> tuple[str, ...]:
    """The carrier of a new key: the model's largest weight tensors (floating, two or more dimensions), largest first,
    until they hold `minimum` values, never more than `maximum` (a tensor that would pass it is skipped)."""
    candidates = sorted(
        ((name, t.numel()) for name, t in weights.items() if t.dtype.is_floating_point and t.dim() >= 2),
        key=lambda item: (-item[1], item[0]),
    )
    chosen: list[str] = []
    held = 0
    for name, size in candidates:
        if held >= minimum:
            break
        if held + size <= maximum:
            chosen.append(name)
            held += size
    if held < 4 * WATERMARK_BITS:
        raise ConfigError(f"the model's weight tensors hold {held} values: too few to carry a watermark")
    return tuple(chosen)


def new_key(
    weights: StateDict,
    purpose: Purpose,
    *,
    bits: int = DEFAULT_BITS,
    margin: float = DEFAULT_MARGIN,
    secret: bytes | None = None,
    carrier: Sequence[str] | None = None,
) -> MarkKey:
    """A key for models shaped like `weights`: a fresh 32-byte secret unless one is given."""
    names = tuple(carrier) if carrier is not None else choose_carrier(weights)
    missing = [n for n in names if n not in weights]
    if missing:
        raise ConfigError(f"the model has no tensor {missing[0]!r} to carry a watermark")
    secret = os.urandom(32) if secret is None else secret
    shapes = tuple(tuple(weights[n].shape) for n in names)
    return MarkKey(purpose, names, shapes, bits, secret.hex(), margin)


def fingerprint_secret(master: bytes, model_hash: str, nonce: bytes) -> bytes:
    """The secret of one export's fingerprint: HMAC-SHA256 of the model and the export's nonce under the hospital's
    `master` secret; no one without `master` can compute it."""
    message = b"tclearn fingerprint v1" + bytes.fromhex(model_hash) + nonce
    return hmac.new(master, message, hashlib.sha256).digest()


def carrier_of(weights: StateDict, key: MarkKey) -> torch.Tensor:
    """The key's carrier in `weights` as one float64 vector; `IntegrityError` when the model lacks a carrier tensor or
    has it in another shape (another architecture)."""
    parts = []
    for name, shape in zip(key.carrier, key.shapes, strict=True):
        tensor = weights.get(name)
        if tensor is None:
            raise IntegrityError(
                f"the model has no tensor {name!r}, which the {key.purpose} watermark is carried by: "
                "it is not of the coalition's architecture"
            )
        if tuple(tensor.shape) != shape:
            raise IntegrityError(
                f"the model's {name!r} is {tuple(tensor.shape)}, the {key.purpose} watermark's carrier is {shape}: "
                "it is not of the coalition's architecture"
            )
        if not tensor.dtype.is_floating_point:
            raise IntegrityError(f"the model's {name!r} holds {tensor.dtype}, not weights")
        parts.append(tensor.detach().to("cpu", torch.float64).flatten())
    return torch.cat(parts)


def projections(w: torch.Tensor, key: MarkKey) -> torch.Tensor:
    """`u_i = sqrt(d) <x_i, w> / |w|` for every bit (chance: standard normal), signed by the message: positive where
    the bit reads right."""
    norm = w.norm()
    if not torch.isfinite(norm) or norm == 0:
        raise IntegrityError(f"the {key.purpose} watermark's carrier is zero or not finite")
    u = (key.projection.double() @ w) * math.sqrt(key.dim) / norm
    return u * key.signs.to(u.dtype)


@dataclass(frozen=True)
class Reading:
    """A model measured against a key: how many of its bits read wrong, and what that means under chance."""

    bits: int
    errors: int
    margin: float  # the median signed projection, in chance standard deviations

    @property
    def ber(self) -> float:
        return self.errors / self.bits

    @property
    def p_value(self) -> float:
        """The chance that a model which never carried the mark reads this well or better."""
        return chance_tail(self.bits, self.errors)

    def within(self, max_ber: float) -> bool:
        return self.ber <= max_ber


def measure(weights: StateDict, key: MarkKey) -> Reading:
    """`weights` read against `key`."""
    signed = projections(carrier_of(weights, key), key)
    return Reading(key.bits, int((signed <= 0).sum()), float(signed.median()))


def chance_tail(bits: int, errors: int) -> float:
    """P(Binomial(bits, 1/2) <= errors): the chance that a key independent of a model reads at most `errors` wrong."""
    if errors < 0:
        return 0.0
    return sum(math.comb(bits, k) for k in range(min(errors, bits) + 1)) / 2**bits


def threshold(bits: int, tests: int, alpha: float = FALSE_ACCUSATION) -> int:
    """The most errors a reading may have to count as a match when `tests` keys are tried on one model, so that the
    chance of any match for a model that carries none stays within `alpha` (union bound); -1: no reading can."""
    if tests < 1:
        raise ConfigError(f"a trace tries one key or more, got {tests}")
    errors = -1
    while errors + 1 <= bits and tests * chance_tail(bits, errors + 1) <= alpha:
        errors += 1
    return errors


def matches(readings: Sequence[Reading], alpha: float = FALSE_ACCUSATION) -> list[int]:
    """Which of `readings` — one model read against every key on record — name their key: at most `t` bits wrong (the
    mark is there) or at most `t` bits right (the mark was inverted by a holder of the key), `t = threshold(bits,
    2 * len(readings), alpha)`, so that a model carrying none of the keys is named with chance <= `alpha`."""
    tests = 2 * len(readings)
    return [i for i, r in enumerate(readings) if min(r.errors, r.bits - r.errors) <= threshold(r.bits, tests, alpha)]


def false_accusation_bound(bits: int, tests: int, alpha: float = FALSE_ACCUSATION) -> float:
    """The chance that a model carrying none of `tests` keys of `bits` bits is named by `matches` (union bound over
    both tails of every key): at most `alpha`."""
    return 2 * tests * chance_tail(bits, threshold(bits, 2 * tests, alpha))


def hinge(w: torch.Tensor, key: MarkKey, x: torch.Tensor | None = None, s: torch.Tensor | None = None) -> torch.Tensor:
    """The mean of `relu(margin - s_i u_i)` over the key's bits for the carrier vector `w` (differentiable): 0 once
    every bit reads right by the key's margin. `x` and `s`: the key's projection and signs already on `w`'s device."""
    x = key.projection.to(w.device, w.dtype) if x is None else x
    s = key.signs.to(w.device, w.dtype) if s is None else s
    u = (x @ w) * math.sqrt(key.dim) / w.norm()
    return torch.relu(key.margin - u * s).mean()


def stamp(weights: StateDict, key: MarkKey, *, max_steps: int = 2000, lr: float = 1e-3) -> dict[str, torch.Tensor]:
    """`weights` with `key` written into its carrier alone, by the mark loss without data: for an untrained genesis,
    another random start that already carries the mark (training then only keeps it); every other tensor as it was.
    `ConfigError` if the mark has not taken within `max_steps`."""
    carrier = carrier_of(weights, key)  # checks the architecture
    w = carrier.to(torch.float32).clone().requires_grad_(True)
    optimiser = torch.optim.Adam([w], lr=lr)
    for _ in range(max_steps):
        loss = hinge(w, key)
        if float(loss.detach()) == 0.0:
            break
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    else:
        raise ConfigError(f"the {key.purpose} watermark did not take in {max_steps} steps")
    stamped = {name: t.detach().clone() for name, t in weights.items()}
    offset = 0
    for name, shape in zip(key.carrier, key.shapes, strict=True):
        size = math.prod(shape)
        stamped[name] = w.detach()[offset : offset + size].view(shape).to(weights[name].dtype)
        offset += size
    return stamped


class MarkLoss(nn.Module):
    """The regulariser that writes keys into a model during training: the mean `hinge` over its keys. Its value is 0
    once every bit of every key reads right by the key's margin."""

    def __init__(self, model: nn.Module, keys: Sequence[MarkKey]) -> None:
        super().__init__()
        if not keys:
            raise ConfigError("a mark loss needs one key or more")
        params = dict(model.named_parameters())
        buffers = dict(model.state_dict())
        self._model = [model]  # not a submodule: the loss holds no parameters of its own
        self._moved: dict[tuple[str, torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}
        self.keys = tuple(keys)
        for key in self.keys:
            carrier_of(buffers, key)  # the model carries the key's tensors in its shapes
            not_trained = [n for n in key.carrier if n not in params]
            if not_trained:
                raise ConfigError(f"{not_trained[0]!r} is not a trained parameter; it cannot carry a watermark")

    def forward(self) -> torch.Tensor:
        params = dict(self._model[0].named_parameters())
        total = torch.zeros((), device=next(iter(params.values())).device)
        for key in self.keys:
            w = torch.cat([params[n].flatten() for n in key.carrier])
            total = total + hinge(w, key, *self._on(key, w))
        return total / len(self.keys)

    def _on(self, key: MarkKey, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The key's projection and signs on `w`'s device and dtype, moved there once (not at every step)."""
        where = (key.secret, w.device, w.dtype)
        if where not in self._moved:
            self._moved[where] = (key.projection.to(w.device, w.dtype), key.signs.to(w.device, w.dtype))
        return self._moved[where]
