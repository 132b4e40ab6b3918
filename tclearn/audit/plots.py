"""The report's figures, drawn with matplotlib's object API (no pyplot, no global backend) into PNG files.

Each function takes plain values from the rebuilt history, writes one PNG and returns its path, so the
HTML report only links sibling files.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from tclearn.ledger.history import CandidateHistory, LedgerHistory
from tclearn.types import ModelState, Role

STATE_COLOURS: dict[ModelState, str] = {
    ModelState.NONE: "#bdbdbd",
    ModelState.SUBMITTED: "#90a4ae",
    ModelState.OPEN: "#1565c0",
    ModelState.COMMITTED: "#2e7d32",
    ModelState.REJECTED: "#c62828",
    ModelState.EXPIRED: "#ff8f00",
    ModelState.STALE: "#8d6e63",
}


def mean_score_global(candidate: CandidateHistory) -> float | None:
    """Mean score on the global test set G over the candidate's votes; None without votes."""
    if not candidate.votes:
        return None
    return float(np.mean([v.score_global for v in candidate.votes]))


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    return path


def scores_figure(history: LedgerHistory, path: Path) -> Path:
    """Mean score on G of each committed model along the lineage (genesis has no votes, so no point)."""
    lineage = history.lineage()
    points = [(i, s) for i, s in ((i, mean_score_global(history.candidates[i])) for i in lineage) if s is not None]
    fig = Figure(figsize=(7, 3.5))
    ax = fig.add_subplot()
    if points:  # evenly spaced in lineage order, labelled with the model ids
        ax.plot(range(len(points)), [s for _, s in points], marker="o", color=STATE_COLOURS[ModelState.COMMITTED])
        ax.set_xticks(range(len(points)), [str(i) for i, _ in points])
    else:
        ax.text(0.5, 0.5, "no committed model has votes yet", ha="center", va="center", transform=ax.transAxes)
    ax.set(xlabel="committed model id (lineage order)", ylabel="mean score on G", title="Score on G along the lineage")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def votes_figure(history: LedgerHistory, names: Mapping[str, str], path: Path) -> Path:
    """Candidates x validators: approve (green), reject (red), absent (grey)."""
    candidates = [c for c in sorted(history.candidates.values(), key=lambda c: c.id) if c.id != 0]
    voters = {v.validator for c in candidates for v in c.votes}
    voters |= {m.address for m in history.members.values() if Role.VALIDATOR in m.roles}
    validators = sorted(voters, key=lambda a: names.get(a, a))
    matrix = np.zeros((max(len(candidates), 1), max(len(validators), 1)))
    for row, c in enumerate(candidates):
        for v in c.votes:
            matrix[row, validators.index(v.validator)] = 1 if v.approve else -1
    fig = Figure(figsize=(max(4.0, 1 + 0.9 * len(validators)), max(2.5, 1 + 0.35 * len(candidates))))
    ax = fig.add_subplot()
    ax.imshow(matrix, cmap=ListedColormap(["#c62828", "#eeeeee", "#2e7d32"]), vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(range(len(validators)), [names.get(a, a) for a in validators], rotation=30, ha="right")
    ax.set_yticks(range(len(candidates)), [str(c.id) for c in candidates])
    ax.set(
        xlabel="validator",
        ylabel="candidate",
    )
    ax.set_title("Votes: green approve, red reject, grey absent", fontsize=9)
    return _save(fig, path)


def lineage_figure(history: LedgerHistory, path: Path) -> Path:
    """Candidates as nodes by id, an edge to each parent; committed on the lowest row, siblings stacked above."""
    rows: dict[int, int] = {}
    taken: dict[int, int] = {}  # parent id -> uncommitted children placed so far
    for c in sorted(history.candidates.values(), key=lambda c: c.id):
        if c.state == ModelState.COMMITTED:
            rows[c.id] = 0
        else:
            taken[c.parent_id] = taken.get(c.parent_id, 0) + 1
            rows[c.id] = taken[c.parent_id]
    fig = Figure(figsize=(max(5.0, 0.6 * len(rows)), 3))
    ax = fig.add_subplot()
    for c in history.candidates.values():
        if c.id != 0 and c.parent_id in rows:
            ax.plot([c.parent_id, c.id], [rows[c.parent_id], rows[c.id]], color="#9e9e9e", zorder=1)
    for state in ModelState:
        ids = [c.id for c in history.candidates.values() if c.state == state]
        if ids:
            ax.scatter(
                ids, [rows[i] for i in ids], s=260, color=STATE_COLOURS[state], label=state.name.lower(), zorder=2
            )
    for i, row in rows.items():
        ax.annotate(str(i), (i, row), ha="center", va="center", color="white", fontsize=8, zorder=3)
    ax.set_yticks([])
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="model id", title="Lineage: edges to parents, colour by state")
    ax.set_ylim(-0.7, max(rows.values(), default=0) + 0.7)
    ax.legend(loc="upper left", fontsize=7, ncols=3, frameon=False)
    return _save(fig, path)


def comparison_figure(scores: Mapping[str, object], path: Path) -> Path:
    """Bars of the score on G: each hospital alone, the coalition, the centralised model."""
    bars: list[tuple[str, float, str]] = []
    single = scores.get("single")
    if isinstance(single, Mapping):
        bars += [(str(name), float(value), "#90a4ae") for name, value in single.items() if value is not None]
    for key, colour in (("coalition", "#2e7d32"), ("centralized", "#1565c0")):
        value = scores.get(key)
        if isinstance(value, int | float):
            bars.append((key, float(value), colour))
    fig = Figure(figsize=(max(4.0, 0.9 * len(bars) + 1), 3.5))
    ax = fig.add_subplot()
    ax.bar([b[0] for b in bars], [b[1] for b in bars], color=[b[2] for b in bars])
    ax.set(ylabel="score on G", title="Alone, together, centralised")
    ax.tick_params(axis="x", labelrotation=30)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)
