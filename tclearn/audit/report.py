"""The HTML report of a coalition run: summary, candidates, each vote's scores by stratum, figures and the audit's
verdict.

`write_report` writes `report.html` (inline CSS, no scripts, every string escaped) and the PNGs it links
as sibling files into one folder, so the folder can be archived or served as it is.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from html import escape
from pathlib import Path
from typing import Any

from tclearn.audit.evidence import stratum_outcome
from tclearn.audit.plots import comparison_figure, lineage_figure, mean_score_global, scores_figure, votes_figure
from tclearn.audit.verify import AuditReport
from tclearn.ledger.history import LedgerHistory
from tclearn.records import VoteEvidence

SUMMARY_KEYS = (
    "variant",
    "chain",
    "mode",
    "metric",
    "members",
    "validators",
    "byzantine",
    "committed",
    "rejected",
    "poisoned_submitted",
    "poisoned_committed",
    "honest_rejected",
    "scores",
    "gas",
    "audit_ok",
    "seconds",
)

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #212121; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #cfd8dc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #eceff1; }
.ok { color: #2e7d32; font-weight: bold; } .failed { color: #c62828; font-weight: bold; }
.error { color: #c62828; } .warning { color: #ef6c00; } .info { color: #607d8b; }
details.vote { margin: 0.3em 0; } details.vote table { margin: 0.3em 0 0.8em 1.5em; }
code { font-size: 0.85em; } img { max-width: 100%; display: block; margin: 1em 0; }
"""


def format_value(value: Any) -> str:
    """A summary value as short plain text (escaped later): lists joined, dicts as `key: value` pairs."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {format_value(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(format_value(v) for v in value)
    return str(value)


def _table(header: Iterable[str], rows: Iterable[Iterable[str]], raw: bool = False) -> str:
    """An HTML table; cells are escaped unless `raw` (then the caller escaped them)."""
    cell = (lambda s: s) if raw else escape
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def summary_rows(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The summary's keys in the issue's order, then any others; the candidate list has its own table."""
    keys = [k for k in SUMMARY_KEYS if k in summary] + [k for k in summary if k not in SUMMARY_KEYS]
    return [(k, format_value(summary[k])) for k in keys if k != "candidates"]


def candidate_rows(history: LedgerHistory, names: Mapping[str, str], summary: Mapping[str, Any]) -> list[list[str]]:
    byzantine = {c.get("id"): c.get("byzantine") for c in summary.get("candidates", []) if isinstance(c, Mapping)}
    rows = []
    for c in sorted(history.candidates.values(), key=lambda c: c.id):
        state = c.state.name.lower() + (f" ({c.reject_reason.name.lower()})" if c.reject_reason else "")
        score = mean_score_global(c)
        rows.append(
            [
                str(c.id),
                str(c.parent_id),
                names.get(c.proposer, c.proposer),
                names.get(c.general, c.general),
                state,
                f"{c.approvals} / {c.rejections} / {c.eligible}",
                "—" if score is None else f"{score:.4f}",
                format_value(byzantine.get(c.id)),
                "0x" + c.model_hash.hex()[:16] + "…",
            ]
        )
    return rows


def _audit_section(audit: AuditReport | None) -> str:
    if audit is None:
        return "<p>No audit was run.</p>"
    verdict = '<span class="ok">OK</span>' if audit.ok else '<span class="failed">FAILED</span>'
    counts = (
        f"{audit.models_checked} models checked, {audit.blobs_verified} blobs verified, "
        f"lineage {' → '.join(map(str, audit.lineage))}"
    )
    rows = [
        [f'<span class="{escape(str(f.severity))}">{escape(str(f.severity))}</span>', str(f.model_id), escape(f.what)]
        for f in audit.findings
    ]
    findings = _table(["severity", "model", "finding"], rows, raw=True) if rows else "<p>No findings.</p>"
    return f"<p>Audit: {verdict} — {escape(counts)}</p>{findings}"


def _comparison_section(score_table: Mapping[str, Mapping[str, float]] | None) -> str:
    if not score_table:
        return ""
    sets = list(next(iter(score_table.values())))
    header = ["model", *(s if s == "G" else f"L of {s}" for s in sets)]
    rows = [[name, *(f"{row[s]:.3f}" for s in sets)] for name, row in score_table.items()]
    return f"<h2>Scores on G and on each local test set L</h2>{_table(header, rows)}"


STRATA_HEADER = ("set", "stratum", "samples", "candidate", "head", "tolerance", "outcome")


def strata_rows(evidence: VoteEvidence) -> list[list[str]]:
    """One vote's strata as escaped table cells, the outcome marked (a failing stratum in red)."""
    rows = []
    for s in evidence.strata:
        outcome = stratum_outcome(s)
        marked = f'<span class="{"failed" if outcome == "fails" else "ok" if s.judged else "info"}">{outcome}</span>'
        scores = ("—" if v is None else f"{v:.3f}" for v in (s.candidate, s.head))
        rows.append([escape(s.set), escape(s.name), str(s.samples), *scores, f"{s.tolerance:g}", marked])
    return rows


def _strata_section(evidence: Mapping[int, Mapping[str, VoteEvidence]] | None, names: Mapping[str, str]) -> str:
    """Per model, each vote's reason and its table of strata (folded: a run holds many votes)."""
    if not evidence:
        return ""
    parts = []
    for model_id, votes in sorted(evidence.items()):
        shown = [(validator, e) for validator, e in votes.items() if e.strata]
        if not shown:
            continue
        parts.append(f"<h3>Model {model_id}</h3>")
        for validator, e in shown:
            vote = "approve" if e.approve else "reject"
            summary = f"{names.get(validator, validator)}: {vote} — {e.reason}"
            table = _table(STRATA_HEADER, strata_rows(e), raw=True)
            parts.append(f'<details class="vote"><summary>{escape(summary)}</summary>{table}</details>')
    if not parts:
        return ""
    lead = (
        "<p>Each vote's scores on every stratum of G and of the validator's L (findings by size, each class, each "
        "label) against the head's; a stratum with fewer samples than the policy's minimum is shown, not judged.</p>"
    )
    return f"<h2>Votes by stratum</h2>{lead}{''.join(parts)}"


def _image_src(path: Path, embed: bool) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode() if embed else path.name


def write_report(
    out_dir: Path,
    history: LedgerHistory,
    summary: Mapping[str, Any],
    names: Mapping[str, str] | None = None,
    audit: AuditReport | None = None,
    score_table: Mapping[str, Mapping[str, float]] | None = None,
    embed_images: bool = False,
    evidence: Mapping[int, Mapping[str, VoteEvidence]] | None = None,
) -> Path:
    """Writes `report.html` and its PNGs into `out_dir` (created if needed); returns the HTML's path.

    `names` maps addresses to display names and overrides the names registered on chain; `score_table`
    (model -> {"G": score, hospital: score on its local set}) adds the comparison on G and every L;
    `embed_images` inlines the PNGs as data URIs, so that report.html alone is the whole report; `evidence`
    (model id -> validator -> its vote evidence, `tclearn.audit.evidence.all_evidence`) adds each vote's strata.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    known = {address: member.name or address for address, member in history.members.items()}
    known.update(names or {})
    images = [
        scores_figure(history, out_dir / "scores.png"),
        votes_figure(history, known, out_dir / "votes.png"),
        lineage_figure(history, out_dir / "lineage.png"),
    ]
    scores = summary.get("scores")
    if isinstance(scores, Mapping) and scores:
        images.append(comparison_figure(scores, out_dir / "comparison.png"))
    members = _table(
        ["name", "address", "roles", "active"],
        [[m.name, m.address, ", ".join(m.roles.names()), format_value(m.active)] for m in history.members.values()],
    )
    candidates = _table(
        [
            "id",
            "parent",
            "proposer",
            "general",
            "state",
            "approve / reject / eligible",
            "mean score G",
            "byzantine",
            "model hash",
        ],
        candidate_rows(history, known, summary),
    )
    figures = "".join(f'<img src="{escape(_image_src(p, embed_images))}" alt="{escape(p.stem)}">' for p in images)
    title = f"tclearn coalition run — head {history.head}"
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title><style>{_CSS}</style></head>
<body>
<h1>{escape(title)}</h1>
<h2>Summary</h2>{_table(["key", "value"], summary_rows(summary))}
{_comparison_section(score_table)}
<h2>Audit</h2>{_audit_section(audit)}
<h2>Members</h2>{members}
<h2>Candidates</h2>{candidates}
{_strata_section(evidence, known)}
<h2>Figures</h2>{figures}
<h2>Raw summary</h2><pre>{escape(json.dumps(summary, indent=2, default=str))}</pre>
</body></html>
"""
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
