"""tasks.artifacts: the Prefect UI artifacts each flow leaves, built from typed results
(pure), and tasks.monitoring.html: the monitor's page with its pictures."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from tasks import artifacts
from tasks.artifacts import monitor as monitor_artifacts
from tasks.artifacts import retrain as retrain_artifacts
from tasks.drift import DriftDecision, DriftResult, FeatureDrift
from tasks.gate import GateConfig, compare
from tasks.monitoring import checks, html
from tasks.monitoring.report import MonitorReport, ReportPaths, SentEvent, WindowSummary
from tasks.profiling import SCORE_COLUMN, profile_frame, summarize_profile

UNTIL = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _drift() -> DriftResult:
    feats = [
        FeatureDrift("tenure", "numeric", "ks", True, 0.5, statistic=0.4, p_adjusted=0.001),
        FeatureDrift("Contract", "categorical", "chi2", True, 0.3, statistic=9.0, p_adjusted=0.01),
        FeatureDrift("gender", "categorical", "chi2", False, 0.2, statistic=0.1, p_adjusted=0.9),
    ]
    return DriftResult("tests", 0.8, 0.3, True, 600, feats, None)


def _profiles(shift: float) -> dict:
    rng = np.random.default_rng(0)
    n = 2_000
    frame = pl.DataFrame({
        "tenure": rng.normal(20 + shift, 5, n),
        "Contract": rng.choice(["Month-to-month", "One year", "Two year"], n,
                               p=[0.5, 0.3, 0.2] if not shift else [0.8, 0.1, 0.1]),
        "gender": rng.choice(["Male", "Female"], n),
        SCORE_COLUMN: rng.beta(2, 5 + shift, n),
    })  # fmt: skip
    return summarize_profile(profile_frame(frame))


def _report(tmp_path: Path) -> MonitorReport:
    return MonitorReport(
        run_at=UNTIL, model_name="telco", champion_tag="telco:v1", config={},
        window=WindowSummary(since=UNTIL - timedelta(hours=1), until=UNTIL, rows=600),
        drift=_drift(), decision=DriftDecision("fire", True, 2, 2, "drift score 0.800"),
        quality=checks.Quality(600),
        performance=checks.Performance(150, 0.71, 0.5, 0.6, 0.84, 0.6, 0.7, True, "AUC fell"),
        health=checks.Health(600, 10.0, 2.0, 5.0, 9.0, 0.01, "prediction log", True, []),
        reference_profile=Path("ref.bin"), current_profile=Path("cur.bin"),
        profiles={"reference": _profiles(0.0), "current": _profiles(8.0)},
        report=ReportPaths(tmp_path / "r.json", tmp_path / "r.html"),
        events=[SentEvent(event="driftloop.drift.detected", id="e-1", reason="drift")],
    )  # fmt: skip


def test_keys_are_stable_and_valid():
    assert artifacts.artifact_key("monitor", "Telco_Churn") == "monitor-telco-churn"
    assert artifacts.artifact_key("retrain", "my.model", "slices") == "retrain-my-model-slices"
    assert re.fullmatch(r"[a-z0-9-]+", artifacts.artifact_key("x", "A:b/ c"))


def test_monitor_artifacts_carry_the_numbers_and_lineage(tmp_path):
    report = _report(tmp_path)
    summary, table, link = monitor_artifacts.monitor_artifacts(report, data_version="abc123")
    assert (summary.key, summary.kind) == ("monitor-telco", "markdown")
    assert "Model `telco:v1` · data version `abc123`" in summary.body
    assert "**600 rows**" in summary.body and "Drift score: 0.800" in summary.body
    assert (
        "drifted: tenure, Contract" in summary.body and "driftloop.drift.detected" in summary.body
    )
    assert (table.key, table.kind) == ("monitor-telco-drift", "table")
    assert [r["feature"] for r in table.body] == ["tenure", "Contract", "gender"]
    assert table.body[0]["statistic"] == 0.4 and table.body[2]["drifted"] is False
    assert (link.key, link.kind) == ("monitor-telco-report", "link")
    assert link.body == (tmp_path / "r.html").resolve().as_uri() and link.link_text == "r.html"
    assert "abc123" in link.description


def test_publish_outside_a_flow_run_does_nothing(tmp_path):
    assert artifacts.publish(monitor_artifacts.monitor_artifacts(_report(tmp_path))) == []


class _Trigger:
    reason, event, event_id = "drift score 0.8", "driftloop.drift.detected", "ev-1"
    evidence = {"score": 0.8, "threshold": 0.3, "drifted_features": [{"feature": "tenure"}]}


def _decision():
    rng = np.random.default_rng(1)
    n = 400
    y = (rng.random(n) < 0.3).astype(float)
    frame = pl.DataFrame({"Contract": rng.choice(["a", "b"], n)})
    champion = np.clip(y * 0.2 + rng.random(n) * 0.8, 0, 1)
    challenger = np.clip(y * 0.6 + rng.random(n) * 0.4, 0, 1)
    config = GateConfig(min_slice_rows=10)
    decision = compare(
        frame, y, champion, challenger, task="binary", segment_columns=["Contract"], config=config
    )
    from dataclasses import replace

    return replace(decision, champion_tag="telco:old", challenger_tag="telco:new")


def test_retrain_artifacts_show_trigger_gate_interval_slices_and_champions():
    decision = _decision()
    assert decision.promote and len(decision.slices) == 2  # every slice, not only regressions
    outcome = {"champion_after": "telco:new", "challenger_data_version": "dv-new",
               "strategy": "full_refit", "n_reference": 2500, "n_feedback": 1050,
               "n_holdout": 400}  # fmt: skip
    summary, slices = retrain_artifacts.retrain_artifacts(decision, _Trigger(), outcome, "dv-old")
    assert (summary.key, summary.kind, slices.key, slices.kind) == (
        "retrain-telco",
        "markdown",
        "retrain-telco-slices",
        "table",
    )
    body = summary.body
    assert "challenger PROMOTED" in body and "Model `telco:new` · data version `dv-new`" in body
    assert "Champion before: `telco:old` (data version `dv-old`) · after: `telco:new`" in body
    assert "drift score 0.8" in body and "ev-1" in body and "drifted_features: tenure" in body
    assert f"champion {decision.champion_score:.4g}" in body
    assert f"paired-bootstrap lower bound {decision.improvement_low:.4g}" in body
    assert "2500 reference + 1050 feedback rows, holdout 400" in body
    assert {r["value"] for r in slices.body} == {"a", "b"}
    assert all(r["regression"] is False for r in slices.body)
    assert slices.body[0]["rows"] + slices.body[1]["rows"] == 400


# --- the monitor's page ----------------------------------------------------------------------


def test_html_draws_drifted_features_score_and_recent_windows(tmp_path):
    document = _report(tmp_path).to_json()
    points = [html.WindowPoint(f"2026-03-01T0{i}:00", 0.1 * i, 0.3, 0.8 - 0.02 * i, None, 0.84)
              for i in range(5)]  # fmt: skip
    page = html.render_report_html(document, points)
    pictures = page.split("id='drift-pictures'>")[1].split("</div>")[0]
    assert pictures.count("<svg") == 2  # tenure and Contract; gender did not drift
    assert "tenure: reference vs current" in pictures and "gender" not in pictures
    assert "Score distribution" in page and "score: reference vs current" in page
    assert "realized AUC" in page and "drift score" in page
    assert "estimated AUC" not in page  # no estimate in these windows: no line for it
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org", "")


def test_numeric_histogram_follows_the_shift():
    ref = _profiles(0.0)["tenure"]["quantiles"]
    cur = _profiles(8.0)["tenure"]["quantiles"]
    edges, a, b = html.numeric_histogram(ref, cur)
    assert abs(a.sum() - 1) < 1e-9 and abs(b.sum() - 1) < 1e-9
    centers = (edges[:-1] + edges[1:]) / 2
    assert 6 < (centers * b).sum() - (centers * a).sum() < 10  # the 8-unit shift


def test_discrete_column_keeps_its_mass_at_its_values():
    ref = [0.0] * 17 + [1.0] * 4  # 80% zeros (a 0/1 column's quantiles)
    edges, a, _ = html.numeric_histogram(ref, ref, bins=10)
    assert a[0] >= 0.8 - 1e-9 and abs(a.sum() - 1) < 1e-9


def test_recent_windows_reads_the_newest_reports(tmp_path):
    import json

    for i in range(4):
        perf = {"auc": 0.8, "champion_auc": 0.84}
        estimate = {"metrics": {"roc_auc": {"value": 0.79, "lower": 0.75, "upper": 0.83}}}
        doc = {"run_at": f"t{i}", "drift": {"score": i / 10, "threshold": 0.3},
               "performance": perf, "evidence": {"estimate": estimate}}  # fmt: skip
        (tmp_path / f"2026030{i}.json").write_text(json.dumps(doc))
    (tmp_path / "20260309.json").write_text("{broken")
    points = html.recent_windows(tmp_path, limit=4)
    assert [p.run_at for p in points] == ["t1", "t2", "t3"]
    assert points[-1].drift_score == 0.3 and points[0].estimated_auc == 0.79


def test_monitor_summary_shows_the_service_processes(tmp_path):
    from tasks.monitoring.serving import ServiceProcess

    process = ServiceProcess(2, 4.0, 3 * 2**20 * 100, 30.0, 14.0, {"champion": ["telco:v0"]})
    report = _report(tmp_path).model_copy(update={"process": process})
    body = monitor_artifacts.monitor_markdown(report)
    assert "2 worker(s), 300 MiB resident, 4.0 CPU s, uptime 30 s" in body
    assert "serving champion: telco:v0 (**not the champion**)" in body
    assert report.to_json()["process"]["served"] == {"champion": ["telco:v0"]}
    page = html.render_report_html(report.to_json())
    assert "<h2>Process</h2>" in page and "resident_memory_bytes" in page


def test_a_winner_handed_to_a_rollout_is_not_called_promoted():
    decision = _decision()
    outcome = {"champion_after": "telco:old", "rollout": {"id": "exp-1"}}
    (summary, _) = retrain_artifacts.retrain_artifacts(decision, _Trigger(), outcome)
    assert "challenger won the gate, handed to a rollout" in summary.body
    assert "PROMOTED" not in summary.body and "after: `telco:old`" in summary.body
