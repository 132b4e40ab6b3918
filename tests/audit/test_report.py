"""`write_report`: the HTML and its PNGs exist, name every candidate and member, and escape what they show."""

from __future__ import annotations

from html import escape
from pathlib import Path

import pytest

from tclearn.audit.report import format_value, summary_rows, write_report
from tclearn.audit.verify import audit
from tests.audit.conftest import AuditedRun

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EVIL = "<script>alert('x')</script>"


def _summary(names: list[str]) -> dict[str, object]:
    return {
        "variant": "B",
        "chain": "embedded",
        "mode": "sequential",
        "metric": "dice",
        "members": names,
        "validators": names,
        "byzantine": [names[2]],
        "candidates": [{"id": 3, "proposer": names[2], "byzantine": True, "state": "rejected"}],
        "committed": 1,
        "rejected": 2,
        "scores": {"coalition": 0.81, "centralized": 0.84, "single": {n: 0.6 + i / 100 for i, n in enumerate(names)}},
        "gas": {"submit": 140000, "open": 60000, "vote": 70000, "per_committed_round": 400000},
        "audit_ok": True,
        "seconds": 12.5,
    }


def test_the_report_names_every_candidate_and_member_and_writes_valid_pngs(run: AuditedRun, tmp_path: Path) -> None:
    history = run.history()
    names = [m.name for m in history.members.values()]
    out = tmp_path / "report"

    html_path = write_report(out, history, _summary(names), audit=audit(history, run.store))

    html = html_path.read_text()
    assert html_path == out / "report.html"
    for name in ("scores.png", "votes.png", "lineage.png", "comparison.png"):
        assert (out / name).read_bytes().startswith(PNG_MAGIC), name
        assert f'src="{name}"' in html
    for candidate_id in history.candidates:
        assert f"<td>{candidate_id}</td>" in html
    assert all(name in html for name in names)
    assert 'Audit: <span class="ok">OK</span>' in html


def test_names_and_summary_values_are_escaped(run: AuditedRun, tmp_path: Path) -> None:
    history = run.history()
    proposer = history.candidates[run.committed].proposer
    summary = _summary([EVIL, "b", "c"])

    html = write_report(tmp_path, history, summary, names={proposer: EVIL}).read_text()

    assert "<script" not in html
    assert "&lt;script&gt;" in html


def test_without_scores_there_is_no_comparison_chart(run: AuditedRun, tmp_path: Path) -> None:
    write_report(tmp_path, run.history(), {"variant": "A"})

    assert not (tmp_path / "comparison.png").exists()
    assert (tmp_path / "lineage.png").exists()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "—"),
        (True, "yes"),
        (0.123456, "0.1235"),
        (["a", "b"], "a, b"),
        ({"submit": 1, "vote": 2.5}, "submit: 1; vote: 2.5"),
    ],
)
def test_format_value(value: object, text: str) -> None:
    assert format_value(value) == text


def test_summary_rows_keep_the_issue_order_and_leave_candidates_out() -> None:
    rows = summary_rows({"seconds": 1, "extra": "x", "variant": "A", "candidates": []})

    assert [k for k, _ in rows] == ["variant", "seconds", "extra"]


def test_score_table_on_g_and_every_l_is_rendered_and_escaped(run: AuditedRun, tmp_path: Path) -> None:
    table = {"coalition": {"G": 0.81, "St Luke": 0.7}, EVIL: {"G": 0.5, "St Luke": 0.25}}
    html = write_report(tmp_path, run.history(), {"variant": "B"}, score_table=table).read_text()
    assert "L of St Luke" in html and "0.810" in html and "0.250" in html
    assert EVIL not in html and escape(EVIL) in html
    assert "local test set L" not in write_report(tmp_path, run.history(), {"variant": "B"}).read_text()
