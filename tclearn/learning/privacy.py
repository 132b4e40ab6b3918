"""Differential privacy accounting: the (epsilon, delta) an increment trained with DP-SGD spends.

Pure functions of the mechanism's parameters — noise multiplier, sampling rate, steps — through Opacus's
accountants (RDP or PRV), so that the proposer declares and the general recomputes the same figure. An increment
is one run of the sampled Gaussian mechanism; a hospital's increments compose (`composed`): on chain their
epsilons are summed (an upper bound), the auditor reports the accountant's tighter composition.
"""

from __future__ import annotations

import enum
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from tclearn.errors import ConfigError, DataError
from tclearn.records import Privacy

# Declared and recomputed epsilons are compared to this relative precision (float noise of the accountants).
EPSILON_TOLERANCE = 1e-6


class Accountant(enum.StrEnum):
    RDP = "rdp"  # Rényi DP of the sampled Gaussian mechanism (Mironov et al.): fast, a little loose
    PRV = "prv"  # privacy random variables (Gopi et al.): tighter, slower


class PrivacyUnit(enum.StrEnum):
    SAMPLE = "sample"  # each image (or table row) is protected
    PATIENT = "patient"  # all of a patient's images together (the manifest groups them)


@dataclass(frozen=True)
class Mechanism:
    """One run of DP-SGD: `steps` steps, each over a Poisson sample of rate `sample_rate`, with Gaussian noise of
    `noise_multiplier` times the clipping norm."""

    noise_multiplier: float
    sample_rate: float
    steps: int

    def __post_init__(self) -> None:
        check_mechanism(self.noise_multiplier, self.sample_rate, self.steps)


def check_mechanism(noise_multiplier: float, sample_rate: float, steps: int) -> None:
    """`ConfigError` naming a parameter of DP-SGD that no accountant can take."""
    if not (isinstance(noise_multiplier, int | float) and math.isfinite(noise_multiplier) and noise_multiplier > 0):
        raise ConfigError(f"the noise multiplier must be a positive number, got {noise_multiplier!r}")
    if not (isinstance(sample_rate, int | float) and 0 < sample_rate <= 1):
        raise ConfigError(f"the sample rate must be in (0, 1], got {sample_rate!r}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ConfigError(f"the number of steps must be a positive integer, got {steps!r}")


def check_delta(delta: float, units: int | None = None) -> None:
    """`ConfigError` unless 0 < delta < 1/`units` (the privacy units a hospital trains on, where known): a delta of
    1/N or more allows a mechanism that publishes one record whole."""
    if not (isinstance(delta, int | float) and 0 < delta < 1):
        raise ConfigError(f"delta must be in (0, 1), got {delta!r}")
    if units is not None and units > 0 and not delta < 1 / units:
        raise ConfigError(
            f"delta {delta:g} is not below 1/N = {1 / units:.3g} for N = {units} privacy units: with so large a "
            "delta a mechanism may publish a record whole; choose delta below 1/N (1e-5 is usual)"
        )


def composed(mechanisms: Sequence[Mechanism], delta: float, accountant: Accountant = Accountant.RDP) -> float:
    """The epsilon at `delta` of running every mechanism in turn on the same data (the accountant's composition)."""
    check_delta(delta)
    if not mechanisms:
        return 0.0
    from opacus.accountants import create_accountant  # Opacus imports torch: only where a figure is asked for

    acc = create_accountant(mechanism=Accountant(accountant).value)
    acc.history = [(m.noise_multiplier, m.sample_rate, m.steps) for m in mechanisms]
    with warnings.catch_warnings():  # PRV warns when its grid is coarse for few steps; the figure stays an upper bound
        warnings.simplefilter("ignore")
        try:
            epsilon = float(acc.get_epsilon(delta=delta))
        except (ValueError, RuntimeError, OverflowError) as exc:
            raise ConfigError(f"the {accountant} accountant cannot account for this mechanism: {exc}") from None
    if not math.isfinite(epsilon) or epsilon < 0:
        raise ConfigError(f"the {accountant} accountant gives no finite epsilon for this mechanism ({epsilon})")
    return epsilon


def epsilon_spent(mechanism: Mechanism, delta: float, accountant: Accountant = Accountant.RDP) -> float:
    """The epsilon at `delta` one increment spends."""
    return composed([mechanism], delta, accountant)


def mechanism_of(privacy: Privacy) -> Mechanism:
    """The mechanism a candidate's `Privacy` record declares (`ConfigError` for one no accountant can take)."""
    return Mechanism(privacy.noise_multiplier, privacy.sample_rate, privacy.steps)


def declared_spending(privacy: Privacy) -> float:
    """What the mechanism a `Privacy` record declares spends at its delta, by its accountant: the figure the general
    and the auditor recompute and compare with the declared epsilon (`ConfigError` when it cannot be accounted)."""
    try:
        accountant = Accountant(privacy.accountant)
    except ValueError:
        raise ConfigError(f"unknown accountant {privacy.accountant!r}; expected rdp or prv") from None
    return epsilon_spent(mechanism_of(privacy), privacy.delta, accountant)


def noise_for(
    target_epsilon: float, sample_rate: float, steps: int, delta: float, accountant: Accountant = Accountant.RDP
) -> float:
    """The smallest noise multiplier (to 1%) with which `steps` steps at `sample_rate` spend at most
    `target_epsilon` at `delta`."""
    if not (isinstance(target_epsilon, int | float) and math.isfinite(target_epsilon) and target_epsilon > 0):
        raise ConfigError(f"the target epsilon must be a positive number, got {target_epsilon!r}")
    check_mechanism(1.0, sample_rate, steps)
    check_delta(delta)
    low, high = 0.0, 1.0
    while epsilon_spent(Mechanism(high, sample_rate, steps), delta, accountant) > target_epsilon:
        low, high = high, high * 2
        if high > 1e4:
            raise ConfigError(
                f"no noise multiplier up to 1e4 keeps {steps} steps at sample rate {sample_rate:g} within epsilon "
                f"{target_epsilon:g}: train fewer steps or on more data"
            )
    while high - low > 0.01 * high:
        mid = (low + high) / 2
        if epsilon_spent(Mechanism(mid, sample_rate, steps), delta, accountant) > target_epsilon:
            low = mid
        else:
            high = mid
    return high


def same_epsilon(declared: float, recomputed: float) -> bool:
    """Whether a declared epsilon is the recomputed one, to the accountants' float precision."""
    return math.isclose(declared, recomputed, rel_tol=EPSILON_TOLERANCE, abs_tol=1e-9)


class PerSample(enum.StrEnum):
    """How DP-SGD computes per-sample gradients (the same gradients, to float precision; vmap is the faster)."""

    VMAP = "vmap"  # torch.func.vmap over the whole network, one sample at a time (functorch)
    HOOKS = "hooks"  # Opacus's GradSampleModule: a grad sampler per layer, functorch for layers it lacks


@dataclass(frozen=True)
class DPConfig:
    """How a member trains with DP-SGD: each privacy unit's gradient clipped to `max_grad_norm`, Gaussian noise of
    `noise_multiplier` times that norm added to each step's sum, epsilon accounted at `delta`."""

    noise_multiplier: float
    max_grad_norm: float
    delta: float
    accountant: Accountant = Accountant.RDP
    unit: PrivacyUnit = PrivacyUnit.SAMPLE
    per_sample: PerSample = PerSample.VMAP
    # The seed of the mechanism's own randomness (who is drawn at each step, the noise). None: fresh from the OS,
    # as the guarantee needs: whoever knows it can replay the draws and subtract the noise, so it is never the
    # published training seed and never leaves the member; give one only to reproduce a run (tests, benchmarks).
    secret_seed: int | None = None

    def __post_init__(self) -> None:
        check_mechanism(self.noise_multiplier, 1.0, 1)
        seed = self.secret_seed
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63):
            raise ConfigError(f"the DP secret_seed must be None or an integer in [0, 2**63), got {seed!r}")
        if not (
            isinstance(self.max_grad_norm, int | float) and math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0
        ):
            raise ConfigError(f"the clipping norm max_grad_norm must be a positive number, got {self.max_grad_norm!r}")
        check_delta(self.delta)
        for name, kind in (("accountant", Accountant), ("unit", PrivacyUnit), ("per_sample", PerSample)):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, kind(value))
            except ValueError:
                allowed = ", ".join(k.value for k in kind)
                raise ConfigError(f"unknown DP {name} {value!r}; expected one of {allowed}") from None


def poisson_steps(batch_size: int, units: int, epochs: int) -> tuple[float, int]:
    """The sample rate q = batch_size / units and the steps, epochs * round(1/q), of a DP-SGD run."""
    if units < batch_size:
        raise DataError(
            f"{units} privacy units cannot fill an expected batch of {batch_size}; lower the batch size (not below "
            "the coalition's minimum) or add data"
        )
    rate = batch_size / units
    return rate, epochs * max(1, round(units / batch_size))


def calibrated(
    epsilon: float | None,
    noise_multiplier: float | None,
    *,
    max_grad_norm: float,
    delta: float,
    accountant: Accountant,
    unit: PrivacyUnit,
    batch_size: int,
    epochs: int,
    units: int,
) -> DPConfig:
    """A member's DP-SGD settings from what it chose — the epsilon each increment may spend (the noise multiplier
    found for `epochs` epochs of Poisson batches of `batch_size` over `units` privacy units) or the noise multiplier
    itself, exactly one — and the coalition's delta and accountant."""
    if (epsilon is None) == (noise_multiplier is None):
        raise ConfigError("give exactly one of epsilon (per increment) and noise_multiplier for DP-SGD training")
    if noise_multiplier is None:
        assert epsilon is not None
        rate, steps = poisson_steps(batch_size, units, epochs)
        noise_multiplier = noise_for(epsilon, rate, steps, delta, accountant)
    return DPConfig(noise_multiplier, max_grad_norm, delta, accountant, unit)
