"""One run description for every simulation: the demo (one process) and `coalition up` (one process per role)
are two drivers of the same `RunSpec` — how many hospitals, how many of them Byzantine and how they attack,
the variant, the rounds — with one Byzantine rule, one row per candidate (`CandidateRow`) and one outcome."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from tclearn.coalition.rounds import CandidateRow
from tclearn.errors import ConfigError
from tclearn.learning.choices import FEDAVG_ONLY, KIND_OF_ATTACK, Attack, AttackKind
from tclearn.types import Variant


def parse_attacks(attack: Attack | str | Sequence[Attack | str]) -> tuple[Attack, ...]:
    """One attack or several, by name; an unknown name is a `ConfigError` listing the known ones."""
    names = [attack] if isinstance(attack, str) else list(attack)
    try:
        return tuple(Attack(a) for a in names)
    except ValueError:
        known = ", ".join(a.value for a in Attack)
        raise ConfigError(f"unknown attack in {', '.join(map(str, names))}; expected one of {known}") from None


@dataclass(frozen=True)
class RunSpec:
    members: int = 4
    byzantine: int = 1
    attack: Attack | Sequence[Attack] = Attack.SIGN_FLIP  # several: the Byzantine members take them in turn
    variant: Variant = Variant.B
    rounds: int = 6
    seed: int = 0
    MIN_MEMBERS: ClassVar[tuple[int, str]] = (2, "a proposer and a validator")
    MIN_ROUNDS: ClassVar[int] = 1

    def __post_init__(self) -> None:
        least, why = self.MIN_MEMBERS
        if self.members < least:
            raise ConfigError(f"--members must be at least {least} ({why}), got {self.members}")
        if not 0 <= self.byzantine < self.members:
            raise ConfigError(f"--byzantine must be between 0 and members - 1, got {self.byzantine}")
        if self.rounds < self.MIN_ROUNDS:
            raise ConfigError(f"--rounds must be at least {self.MIN_ROUNDS}, got {self.rounds}")
        attacks = parse_attacks(self.attack)
        object.__setattr__(self, "attack", attacks[0] if len(attacks) == 1 else attacks)
        object.__setattr__(self, "variant", Variant.parse(self.variant))
        if not attacks:
            raise ConfigError("give at least one --attack ('none' for an honest run)")
        if self.byzantine and Attack.NONE in attacks:
            raise ConfigError("--byzantine members need an --attack other than 'none'")
        if len(attacks) > max(1, self.byzantine):
            raise ConfigError(
                f"{len(attacks)} attacks for {self.byzantine} Byzantine members: each attack needs its own member "
                f"(--byzantine {len(attacks)})"
            )
        if self.byzantine:
            for attack in attacks:
                problem = attack_problem(attack, self.variant, self.run_mode())
                if problem:
                    raise ConfigError(problem)

    @property
    def attacks(self) -> tuple[Attack, ...]:
        return parse_attacks(self.attack)

    def run_mode(self) -> str:
        """incremental or fedavg: how the run's candidates are made."""
        return "incremental"

    def byzantine_at(self, index: int) -> bool:
        """The Byzantine rule: the last `byzantine` hospitals attack; the others are honest."""
        return index >= self.members - self.byzantine

    def attack_at(self, index: int) -> Attack:
        """What hospital `index` does: the Byzantine ones take the attacks in turn; the others none."""
        if not self.byzantine_at(index):
            return Attack.NONE
        return self.attacks[(index - (self.members - self.byzantine)) % len(self.attacks)]


def by_attack(rows: Sequence[CandidateRow]) -> dict[str, dict[str, int]]:
    """Per attack (and "none", the honest candidates): submitted, refused by the general, rejected by the votes,
    committed, and still undecided."""
    counts: dict[str, dict[str, int]] = {}
    for r in rows:
        if r.id is None:
            continue
        c = counts.setdefault(r.attack, dict.fromkeys(("submitted", "refused", "rejected", "committed", "open"), 0))
        c["submitted"] += 1
        voted = r.approvals + r.rejections > 0
        key = {"committed": "committed", "rejected": "rejected" if voted else "refused"}.get(r.state, "open")
        c[key] += 1
    return counts


def attack_problem(attack: Attack, variant: Variant, mode: str) -> str | None:
    """Why a run of `variant` in `mode` cannot simulate `attack`, or None: variant C's encrypted models take only
    the crude attacks (`tclearn.he.attacks`), and the FedAvg-only ones need a FedAvg round."""
    if variant is Variant.C and KIND_OF_ATTACK[attack] not in (AttackKind.NONE, AttackKind.CRUDE):
        crude = ", ".join(a.value for a, kind in KIND_OF_ATTACK.items() if kind is AttackKind.CRUDE)
        return f"variant C (encrypted model) does not simulate the {attack.value} attack; it takes {crude}"
    if attack in FEDAVG_ONLY and mode != "fedavg":
        return f"the {attack.value} attack needs FedAvg rounds: add --mode fedavg, or choose another --attack"
    return None


def outcome(rows: Sequence[CandidateRow]) -> dict[str, int]:
    """What a run's candidates came to: the counts every summary shows."""
    committed = [r for r in rows if r.state == "committed"]
    return {
        "committed": len(committed),
        "rejected": sum(r.state == "rejected" for r in rows),
        "poisoned_submitted": sum(r.byzantine for r in rows),
        "poisoned_committed": sum(r.byzantine for r in committed),
        "honest_rejected": sum(not r.byzantine and r.state == "rejected" for r in rows),
    }
