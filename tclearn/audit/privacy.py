"""Each member's privacy budget: what the chain charged it (from logs alone) and what the auditor makes of it.

`budgets(history)` is every member's spending as the contract counts it — the plain sum of its `PrivacySpent`
charges, an upper bound — with the cap and what is left: the CLI and the member API show it. `spending(history,
declared)` adds, for the auditor, every increment a member was charged for or declared, the accountant's tighter
composition over all their mechanisms (`tclearn.learning.privacy.composed`; None with the reason when they cannot
be composed), and findings where the chain under- or over-counts: a charge that is not the epsilon the
candidate's metadata declares, or a declared epsilon that is not what its mechanism spends. Pure functions of the
history and the candidates' `Privacy` records (`declared_privacy` reads those from the vault), tested on plain
values.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass

from tclearn.audit.findings import Finding, Severity
from tclearn.errors import TclearnError
from tclearn.learning.privacy import Accountant, composed, declared_spending, mechanism_of, same_epsilon
from tclearn.ledger.history import LedgerHistory, spent_by_member
from tclearn.ledger.values import budget_left, epsilon_of, epsilon_units
from tclearn.records import CandidateMetadata, Privacy, Record
from tclearn.vault.store import BlobStore

# model id -> the Privacy its metadata declares (None: the metadata declares none); a model absent from the
# mapping had no readable metadata.
Declared = Mapping[int, Privacy | None]


@dataclass(frozen=True)
class Budget(Record):
    """A member's privacy budget as the chain counts it, epsilon in millionths (`cap` 0: none)."""

    KIND = "privacy budget"
    name: str
    address: str
    spent_units: int
    cap_units: int

    @property
    def left_units(self) -> int | None:
        """What the member may still spend; None without a cap (0 once past a lowered cap)."""
        return budget_left(self.spent_units, self.cap_units)

    def view(self) -> dict[str, object]:
        """The budget as the API and the CLI show it: millionths and epsilon (None: no cap)."""
        left = self.left_units
        return {
            "name": self.name,
            "address": self.address,
            "spent": epsilon_of(self.spent_units),
            "cap": epsilon_of(self.cap_units) if self.cap_units else None,
            "left": None if left is None else epsilon_of(left),
            "spent_units": self.spent_units,
            "cap_units": self.cap_units,
            "left_units": left,
        }


@dataclass(frozen=True)
class Increment(Record):
    """One candidate of a member that spent privacy: charged on chain (`charged`, millionths; 0 when it was not)
    and, when its metadata could be read, the epsilon it declares (None: it declares no DP mechanism) and what
    its mechanism spends, recomputed (None where it cannot be)."""

    KIND = "privacy increment"
    model_id: int
    state: str
    charged: int
    block: int
    metadata: bool  # whether its metadata was read
    declared: float | None = None
    recomputed: float | None = None


@dataclass(frozen=True)
class Composition(Record):
    """The accountant's composition of a member's increments: `epsilon` at `delta`, or None and the `reason`."""

    KIND = "privacy composition"
    epsilon: float | None
    delta: float | None
    accountant: str | None
    reason: str | None = None


@dataclass(frozen=True)
class Spending(Record):
    """A member's budget, its increments and the accountant's composition of them."""

    KIND = "privacy spending"
    budget: Budget
    increments: tuple[Increment, ...]
    composition: Composition

    def view(self) -> dict[str, object]:
        return {
            **self.budget.view(),
            "increments": [
                {**i.to_json(), "charged": epsilon_of(i.charged), "charged_units": i.charged} for i in self.increments
            ],
            "composition": self.composition.to_json(),
        }


def budgets(history: LedgerHistory) -> list[Budget]:
    """Every registered member's budget (and any other account charged), from the logs alone, in registration
    order."""
    spent = spent_by_member(history)
    accounts = [*history.members, *(a for a in spent if a not in history.members)]
    return [Budget(history.name_of(a), a, spent.get(a, 0), history.epsilon_cap) for a in accounts]


def declared_privacy(
    store: BlobStore, history: LedgerHistory, cache: dict[bytes, Privacy | None] | None = None
) -> Declared:
    """The `Privacy` each candidate's metadata declares, read from `store` (re-hashed); a candidate whose metadata
    is missing or does not parse is left out (the audit names it). `cache` (metadata hash -> record) spares
    re-reading blobs, which never change."""
    cache = {} if cache is None else cache
    found: dict[int, Privacy | None] = {}
    for c in history.candidates.values():
        if c.id == 0:
            continue
        if c.metadata_hash not in cache:
            try:
                cache[c.metadata_hash] = CandidateMetadata.parse(store.get(c.metadata_hash.hex())).privacy
            except TclearnError:
                continue
        found[c.id] = cache[c.metadata_hash]
    return found


@functools.lru_cache(maxsize=4096)
def recompute(privacy: Privacy) -> float | None:
    """The epsilon `privacy`'s mechanism spends at its delta, or None when no accountant takes it."""
    try:
        return declared_spending(privacy)
    except TclearnError:
        return None


def compose(privacies: list[Privacy | None], model_ids: list[int]) -> Composition:
    """The accountant's composition of one member's increments (`privacies[i]` that of `model_ids[i]`; None: its
    metadata is unreadable or declares no mechanism), or why there is none."""
    return _compose(tuple(privacies), tuple(model_ids))


@functools.lru_cache(maxsize=1024)  # a service asks again for the same increments: the accountant is slow
def _compose(privacies: tuple[Privacy | None, ...], model_ids: tuple[int, ...]) -> Composition:
    if not privacies:
        return Composition(0.0, None, None)
    missing = [str(m) for m, p in zip(model_ids, privacies, strict=True) if p is None]
    if missing:
        return Composition(None, None, None, f"no DP mechanism can be read for model(s) {', '.join(missing)}")
    known = [p for p in privacies if p is not None]
    for field in ("delta", "accountant", "unit"):
        values = sorted({str(getattr(p, field)) for p in known})
        if len(values) > 1:
            return Composition(None, None, None, f"its increments differ in {field} ({', '.join(values)})")
    first = known[0]
    try:
        epsilon = composed([mechanism_of(p) for p in known], first.delta, Accountant(first.accountant))
    except (TclearnError, ValueError) as exc:
        return Composition(None, first.delta, first.accountant, f"the accountant cannot compose them: {exc}")
    return Composition(epsilon, first.delta, first.accountant)


def _counted(model_id: int, what: str, chain: float, actual: float) -> Finding:
    """A finding where the chain counts `chain` but `actual` was spent: an error when the chain under-counts."""
    severity = Severity.ERROR if chain < actual else Severity.WARNING
    return Finding(severity, model_id, what)


def increment_findings(increment: Increment, privacy: Privacy | None) -> list[Finding]:
    """Where the chain's charge is not what the candidate declares, or the declaration not what its mechanism
    spends (nothing to say when its metadata could not be read)."""
    if not increment.metadata:
        return []
    found, charged = [], epsilon_of(increment.charged)
    try:
        declared_units = 0 if privacy is None else epsilon_units(privacy.epsilon)
    except TclearnError:  # a negative or non-finite epsilon: no charge is it
        declared_units = -1
    if increment.charged != declared_units:
        if privacy is None:
            what = f"was charged epsilon {charged:.6f} on chain but its metadata declares no DP mechanism"
        else:
            what = (
                f"was charged epsilon {charged:.6f} on chain, not the {epsilon_of(max(declared_units, 0)):.6f} its "
                f"metadata declares (epsilon {privacy.epsilon:.6g})"
            )
        found.append(_counted(increment.model_id, what, increment.charged, declared_units))
    if privacy is not None and increment.recomputed is None:
        what = f"declares a DP mechanism no {privacy.accountant} accountant can account for"
        found.append(Finding(Severity.ERROR, increment.model_id, what))
    elif (
        privacy is not None
        and increment.recomputed is not None
        and not same_epsilon(privacy.epsilon, increment.recomputed)
    ):
        what = (
            f"declares epsilon {privacy.epsilon:.6g} but its mechanism spends {increment.recomputed:.6g} "
            f"at delta {privacy.delta:g} ({privacy.accountant})"
        )
        found.append(_counted(increment.model_id, what, privacy.epsilon, increment.recomputed))
    return found


def spending(history: LedgerHistory, declared: Declared) -> tuple[list[Spending], list[Finding]]:
    """Every member's budget with its increments — each candidate charged on chain or declaring a DP mechanism —
    and their composition, and the findings on them (by model id)."""
    charged = {c.model_id: c for c in history.charges}
    findings: list[Finding] = []
    by_member: dict[str, list[tuple[Increment, Privacy | None]]] = {}
    for c in sorted(history.candidates.values(), key=lambda c: c.id):
        privacy = declared.get(c.id)
        charge = charged.get(c.id)
        if charge is None and privacy is None:
            continue
        increment = Increment(
            c.id,
            c.state.name.lower(),
            charge.charge if charge else 0,
            charge.block if charge else c.submitted_block,
            c.id in declared,
            None if privacy is None else privacy.epsilon,
            None if privacy is None else recompute(privacy),
        )
        findings += increment_findings(increment, privacy)
        by_member.setdefault(charge.member if charge else c.proposer, []).append((increment, privacy))
    result = []
    for budget in budgets(history):
        pairs = by_member.get(budget.address, [])
        composition = compose([p for _, p in pairs], [i.model_id for i, _ in pairs])
        result.append(Spending(budget, tuple(i for i, _ in pairs), composition))
    return result, findings


def is_tighter(s: Spending) -> bool:
    """Whether the accountant's composition is below the plain sum on chain (as it usually is for two or more
    increments)."""
    epsilon = s.composition.epsilon
    return epsilon is not None and math.isfinite(epsilon) and epsilon < epsilon_of(s.budget.spent_units)


def privacy_json(history: LedgerHistory, declared: Declared) -> dict[str, object]:
    """`spending` as the auditor's API returns it: every member, the cap, the findings and whether none is an
    error."""
    members, findings = spending(history, declared)
    cap = history.epsilon_cap
    return {
        "ok": not any(f.severity == Severity.ERROR for f in findings),
        "cap": epsilon_of(cap) if cap else None,
        "members": [s.view() for s in members],
        "findings": [{"severity": str(f.severity), "model_id": f.model_id, "what": f.what} for f in findings],
    }
