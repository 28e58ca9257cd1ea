"""tasks.monitoring: window, data quality, performance on feedback, health, evidence, state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from schemas import load_dataset
from schemas.records import TS
from tasks.drift import DriftConfig, DriftDecision
from tasks.monitoring import checks, decision, serving, state
from tasks.monitoring import window as win
from tasks.monitoring.html import render_report_html
from tasks.monitoring.report import MonitorReport, ReportPaths, WindowSummary
from tasks.settings import get_settings
from tests.support.monitoring import window_findings

UNTIL = datetime(2026, 3, 1, 12, tzinfo=UTC)
DS = load_dataset("telco")


def _inputs(n: int, rng: np.random.Generator) -> dict[str, object]:
    cols: dict[str, object] = {}
    for name in DS.column_names:
        info = DS.columns[name]
        if name == DS.target:
            continue
        if name == DS.id_column:
            cols[name] = [f"C{i:06d}" for i in range(n)]
        elif info.is_categorical:
            cols[name] = rng.choice(list(info.categories), n)
        elif info.dtype == pl.Int64:
            cols[name] = rng.integers(0, 2 if name == "SeniorCitizen" else 72, n)
        else:
            cols[name] = rng.uniform(18, 118, n)
    return cols


def _log(n: int, seed: int = 0, minutes: float = 50) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    ts = [UNTIL - timedelta(minutes=minutes * (i + 1) / (n + 1)) for i in range(n)]
    scores = rng.random(n)
    head = pl.DataFrame(
        {
            "request_id": [f"r{seed}-{i}" for i in range(n)],
            "entity_id": [f"C{i:06d}" for i in range(n)],
            "ts": pl.Series(ts, dtype=TS),
            "model_tag": ["telco:v1"] * n,
            "score": scores,
            "decision": scores >= 0.5,
            "shadow_tag": pl.Series([None] * n, dtype=pl.String),
            "shadow_score": pl.Series([None] * n, dtype=pl.Float64),
            "latency_ms": rng.gamma(2.0, 5.0, n),
        }
    )
    return pl.concat([head, pl.DataFrame(_inputs(n, rng))], how="horizontal")


def _champion(**metrics) -> win.Champion:
    return win.Champion("telco", "telco:v1", metrics, None, 0.5, None)


def _report(quality: checks.Quality, verdict: DriftDecision, **parts) -> MonitorReport:
    """A written report of a window with no traffic but ``quality`` and ``verdict``."""
    base = dict(
        run_at=UNTIL, model_name="telco", champion_tag="telco:v1", config={},
        window=WindowSummary(since=UNTIL - timedelta(hours=1), until=UNTIL, rows=quality.rows),
        drift=None, decision=verdict, quality=quality,
        performance=checks.Performance(0, None, None, None, None, None, None, False, ""),
        health=checks.Health(0, 0.0, None, None, None, None, "not available", True, []),
        reference_profile=Path("ref.bin"), current_profile=Path("cur.bin"), profiles={},
        report=ReportPaths(Path("r.json"), Path("r.html")),
    )  # fmt: skip
    return MonitorReport(**{**base, **parts})


def test_window_bounds_and_loading(home):
    settings = get_settings()
    settings.predictions_dir.mkdir(parents=True)
    frame = _log(100)
    frame.write_parquet(settings.predictions_dir / "a.parquet")
    _log(10, seed=1, minutes=200).write_parquet(settings.predictions_dir / "b.parquet")
    bounds = win.window_bounds(60, UNTIL)
    assert bounds.since == UNTIL - timedelta(hours=1) and bounds.minutes == 60
    window = win.load_window(bounds, settings)
    assert window.height == 100 + 3  # the older file has 3 rows inside the last hour
    assert window["ts"].max() < UNTIL


def test_window_reads_the_contracts_text_columns_as_categories(home):
    """Categorical columns come back as ``pl.Categorical`` with the same values, and the
    window's quality is judged the same either way."""
    settings = get_settings()
    settings.predictions_dir.mkdir(parents=True)
    odd = DS.categorical_features[0]  # a tenth of it outside the contract's domain
    outside = pl.when(pl.int_range(pl.len()) < 30).then(pl.lit("bogus")).otherwise(pl.col(odd))
    _log(300).with_columns(outside.alias(odd)).write_parquet(settings.predictions_dir / "a.parquet")
    bounds = win.window_bounds(60, UNTIL)
    plain = win.load_window(bounds, settings)
    cats = win.load_window(bounds, settings, categorical=DS.categorical_features)
    text = [c for c in DS.categorical_features if plain.schema.get(c) == pl.String]
    assert text and all(cats.schema[c] == pl.Categorical for c in text)
    assert cats.with_columns(pl.col(text).cast(pl.String)).equals(plain)
    config = checks.QualityConfig()
    quality = checks.check_quality(cats, DS, config)
    assert quality == checks.check_quality(plain, DS, config)
    assert quality.violation_share[odd] == pytest.approx(30 / plain.height)


def test_quality_of_a_clean_window():
    q = checks.check_quality(_log(300), DS, checks.QualityConfig())
    assert q.ok and not q.schema_break and q.issues == []
    assert q.missing_share["tenure"] == 0.0 and q.violation_share["Contract"] == 0.0


def test_quality_flags_missing_share_and_domain_violations():
    frame = _log(200).with_columns(
        pl.when(pl.int_range(200) < 100).then(None).otherwise(pl.col("tenure")).alias("tenure"),
        pl.when(pl.int_range(200) < 30).then(pl.lit("Weekly")).otherwise(pl.col("Contract"))
        .alias("Contract"),
        pl.when(pl.int_range(200) < 20).then(-5.0).otherwise(pl.col("MonthlyCharges"))
        .alias("MonthlyCharges"),
    )  # fmt: skip
    q = checks.check_quality(frame, DS, checks.QualityConfig(max_missing_share=0.2))
    assert not q.ok and not q.schema_break
    assert q.missing_share["tenure"] == pytest.approx(0.5)
    assert q.violation_share["Contract"] == pytest.approx(0.15)
    assert q.violation_share["MonthlyCharges"] == pytest.approx(0.10)
    assert any("tenure" in i for i in q.issues) and any("Contract" in i for i in q.issues)


def test_schema_break_missing_column_and_wrong_type():
    frame = _log(50).drop("Contract").with_columns(pl.col("tenure").cast(pl.String))
    q = checks.check_quality(frame, DS, checks.QualityConfig())
    assert q.schema_break and not q.ok
    assert q.missing_columns == ["Contract"] and "tenure" in q.type_mismatches


def _labels(window: pl.DataFrame, flip: float, seed: int = 99) -> pl.DataFrame:
    """Labels agreeing with the scores, with a share ``flip`` of them inverted."""
    rng = np.random.default_rng(seed)
    y = (window["score"].to_numpy() > rng.random(window.height)).astype(float)
    y = np.where(rng.random(window.height) < flip, 1 - y, y)
    return pl.DataFrame(
        {
            "request_id": window["request_id"],
            "entity_id": pl.Series([None] * window.height, dtype=pl.String),
            "label": y,
            "ts": window["ts"],
        }  # fmt: skip
    )


def test_performance_against_champion_test_metrics():
    window = _log(400)
    config = checks.PerformanceConfig(min_labels=100, max_auc_drop=0.05)
    champ = _champion(roc_auc=0.80, precision=0.6, recall=0.7)
    good = checks.compute_performance(window, _labels(window, 0.0), champ, config)
    assert good.labelled == 400 and good.auc > 0.75 and not good.degraded
    bad = checks.compute_performance(window, _labels(window, 0.45), champ, config)
    assert bad.degraded and bad.auc < 0.75 and "AUC" in bad.reason
    few = checks.compute_performance(window, _labels(window.head(50), 0.45), champ, config)
    assert few.labelled == 50 and not few.degraded and "min_labels" in few.reason
    none = checks.compute_performance(window, _labels(window.head(0), 0.0), champ, config)
    assert none.labelled == 0 and none.auc is None


def test_a_canary_challengers_rows_do_not_count_as_the_champions():
    """Mid-canary the window holds rows the challenger answered: the champion's realized
    performance and its prediction drift are judged on its own rows; inputs on every row."""
    window = _log(800)
    labels = _labels(window, 0.0)
    other = pl.int_range(800) % 2 == 1  # half the entities routed to the challenger
    canary = window.with_columns(
        pl.when(other).then(pl.lit("telco:v2")).otherwise("model_tag").alias("model_tag"),
        pl.when(other).then(1 - pl.col("score")).otherwise("score").alias("score"),
    )  # the challenger's scores rank the labels backwards
    config = checks.PerformanceConfig(min_labels=100, max_auc_drop=0.05)
    champ = _champion(roc_auc=0.80, precision=0.6, recall=0.7)
    perf = checks.compute_performance(canary, labels, champ, config)
    assert perf.labelled == 400 and perf.auc > 0.75 and not perf.degraded
    mixed = checks.compute_performance(canary.with_columns(model_tag=pl.lit("telco:v1")), labels,
                                       champ, config)  # fmt: skip
    assert mixed.degraded  # what the monitor judged before it told the arms apart
    frame = win.monitor_frames(canary, DS, score_column="s", champion_tag="telco:v1")
    assert frame.height == 800 and frame["s"].null_count() == 400
    assert frame["s"].drop_nulls().to_list() == window["score"].gather_every(2).to_list()
    assert frame.select(DS.feature_columns).equals(canary.select(DS.feature_columns))


def test_health_rate_latency_errors():
    window = _log(600).with_columns(
        pl.when(pl.int_range(600) < 60).then(None).otherwise(pl.col("score")).alias("score")
    )
    h = checks.compute_health(
        window, win.window_bounds(60, UNTIL), checks.HealthConfig(max_error_rate=0.05)
    )
    assert h.requests == 600 and h.rate_per_min == pytest.approx(10.0)
    assert h.latency_p50_ms < h.latency_p95_ms <= h.latency_p99_ms
    assert h.error_rate == pytest.approx(0.1) and not h.ok
    counts = serving.ServingCounters(requests=20, client_errors=2, server_errors=10)
    served = checks.compute_health(
        _log(10), win.window_bounds(60, UNTIL), checks.HealthConfig(), counts
    )
    assert served.error_rate == 0.5 and "/metrics" in served.error_source


METRICS = """# TYPE bentoml_api_server_request_total counter
bentoml_api_server_request_total{endpoint="/predict",http_response_code="200",service_name="s",service_version="v"} 90.0
bentoml_api_server_request_total{endpoint="/predict",http_response_code="422",service_name="s",service_version="v"} 8.0
bentoml_api_server_request_total{endpoint="/predict",http_response_code="500",service_name="s",service_version="v"} 2.0
bentoml_api_server_request_total{endpoint="/livez",http_response_code="200",service_name="s",service_version="v"} 500.0
# TYPE driftloop_validation_failures_total counter
driftloop_validation_failures_total{field="tenure",rule="less_than_equal"} 11.0
"""  # noqa: E501


def test_serving_counters_from_metrics_and_deltas():
    now = serving.parse_serving_metrics(METRICS)
    assert now == serving.ServingCounters(100.0, 8.0, 2.0, 11.0)  # probes not counted
    assert now.minus(serving.ServingCounters(40.0, 1.0, 0.0, 1.0)) == serving.ServingCounters(
        60, 7, 2, 10
    )
    assert now.minus(serving.ServingCounters(400.0)) == now  # the service restarted: count from 0
    q = checks.check_quality(_log(50), DS, checks.QualityConfig(max_rejected_share=0.05), now)
    assert not q.ok and q.serving_rejected == 8.0 and "rejected 8.0%" in q.issues[0]
    assert state.serving_since_last_run("telco", None) is None


def test_importance_is_read_defensively():
    assert win._importance({"feature_importance": {"a": 2, "b": 1}}) == {"a": 2.0, "b": 1.0}
    assert win._importance({"feature_importance": [["a", 1]]}) == {"a": 1.0}
    assert win._importance({"feature_importance": {"gain": {"a": 3}}}) == {"a": 3.0}
    assert win._importance({}) is None and win._importance({"importance": "x"}) is None


def test_quality_failure_blocks_the_drift_decision(home):
    q = checks.check_quality(_log(50).drop("Contract"), DS, checks.QualityConfig())
    perf = checks.Performance(0, None, None, None, None, None, None, False, "")
    due = decision.decide_window(window_findings(None, q, perf, _champion()), DriftConfig(), UNTIL)
    assert due.decision.action == "blocked" and not due.drift_fire

    class Fake:
        calls: list = []

        def emit_data_quality_failed(self, name, evidence):
            self.calls.append((name, evidence))
            return "id-1"

    report = decision.emit_events(_report(q, due.decision), due, Fake())
    assert [e.event for e in report.events] == ["data_quality_failed"]
    assert report.events[0].id == "id-1"
    name, ev = Fake.calls[0]
    assert name == "telco" and ev["reason"].startswith("schema break")
    assert ev["report_html"] == "r.html" and "missing column Contract" in ev["quality_issues"]


def test_report_json_is_plain_and_reads_back():
    """Non-finite numbers become null, times keep ``isoformat``'s form, the drift carries its
    drifted features; the JSON validates back into the same report (the CLI reads it so)."""
    from tasks.drift import DriftResult, FeatureDrift

    q = checks.check_quality(_log(50), DS, checks.QualityConfig())
    feature = FeatureDrift("tenure", "numeric", "ks", True, 1.0, statistic=np.float64("nan"))
    drift = DriftResult("tests", 1.0, 0.3, True, 50, [feature], None)
    verdict = DriftDecision("quiet", False, 0, 2, "x")
    report = _report(q, verdict, drift=drift)
    doc = report.to_json()
    assert doc["run_at"] == UNTIL.isoformat() and doc["window"]["until"] == UNTIL.isoformat()
    assert doc["decision"] == verdict.to_dict() and doc["drift"]["drifted_features"] == ["tenure"]
    assert doc["drift"]["features"][0]["statistic"] is None
    assert doc["report"] == {"json": "r.json", "html": "r.html"} and doc["events"] == []
    back = MonitorReport.model_validate(doc)
    assert back.decision == verdict and back.quality == q
    assert back.drift is not None and back.drift.drifted_features == ["tenure"]


def test_serving_counters_scraped_over_http_are_deltas(home):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    pages = [METRICS, METRICS.replace(" 90.0", " 190.0")]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = pages.pop(0).encode() if self.path == "/metrics" else b""
            self.send_response(200 if body else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert (
            state.serving_since_last_run("telco", url).requests == 100.0
        )  # first scrape: since start
        assert state.serving_since_last_run("telco", url) == serving.ServingCounters(
            100.0, 0.0, 0.0, 0.0
        )
        assert state.serving_since_last_run("telco", url) is None  # 404 now: no answer, no numbers
    finally:
        server.shutdown()


def test_window_of_files_with_different_schemas_is_a_schema_break(home):
    settings = get_settings()
    settings.predictions_dir.mkdir(parents=True)
    _log(20).write_parquet(settings.predictions_dir / "a.parquet")
    broken = _log(30, seed=1).with_columns(pl.col("tenure").cast(pl.String)).drop("Contract")
    broken.write_parquet(settings.predictions_dir / "b.parquet")
    (settings.predictions_dir / ".c.parquet.tmp.parquet").write_bytes(b"half a file")
    window = win.load_window(win.window_bounds(60, UNTIL), settings)
    assert window.height == 50
    q = checks.check_quality(window, DS, checks.QualityConfig())
    assert q.schema_break and "tenure" in q.type_mismatches
    assert q.missing_share["Contract"] == pytest.approx(30 / 50)  # absent from one file


def test_drift_and_degraded_performance_in_one_run_trigger_one_retrain(home):
    """Both due in the same window: one drift event (carrying the performance evidence), not
    two events that would start two retrains; and the performance alarm then cools down."""
    from types import SimpleNamespace

    q = checks.check_quality(_log(50), DS, checks.QualityConfig())
    perf = checks.Performance(500, 0.6, 0.5, 0.4, 0.84, 0.6, 0.7, True, "AUC fell 0.24")
    drifting = SimpleNamespace(drifting=True, window_rows=500, score=0.9)
    config = DriftConfig(hysteresis_windows=1, min_window_rows=10)
    due = decision.decide_window(window_findings(drifting, q, perf, _champion()), config, UNTIL)
    assert due.drift_fire and not due.performance_fire
    later = UNTIL + timedelta(minutes=5)
    quiet = SimpleNamespace(drifting=False, window_rows=500, score=0.1)
    again = decision.decide_window(window_findings(quiet, q, perf, _champion()), config, later)
    assert not again.performance_fire, "cooldown after the drift fire covers performance"


def test_an_empty_window_is_not_a_schema_break():
    q = checks.check_quality(pl.DataFrame(), DS, checks.QualityConfig())
    assert q.ok and not q.schema_break and q.rows == 0


# --- the state between runs ------------------------------------------------------------------


def test_state_persists_per_model(home):
    import json

    with state.update_state("a") as s:
        s.consecutive = 2
    with state.update_state("b") as s:
        s.consecutive = 1
    assert state.load_state("a").consecutive == 2 and state.load_state("b").consecutive == 1
    assert state.load_state("c") == state.MonitorState()
    on_disk = json.loads(get_settings().monitor_state.read_text())
    assert on_disk == {
        "a": {"consecutive": 2, "history": []},
        "b": {"consecutive": 1, "history": []},
    }


def test_state_updates_hold_the_lock(home):
    """Four concurrent read-modify-writes: none is lost."""
    import threading
    import time

    def bump() -> None:
        with state.update_state("m") as s:
            seen = s.consecutive
            time.sleep(0.05)
            s.consecutive = seen + 1

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert state.load_state("m").consecutive == 4


def test_state_file_written_before_the_model_reads_back(home):
    """A state file as the dict-based monitor wrote it validates; a broken one says where."""
    path = get_settings().monitor_state
    path.parent.mkdir(parents=True)
    path.write_text(
        '{"telco": {"champion_tag": "telco:v1", "consecutive": 1, "last_fired_at": '
        '"2026-03-01T12:00:00+00:00", "history": [{"at": "2026-03-01T12:00:00+00:00", '
        '"score": null, "action": "fire"}], "serving_counters": {"requests": 5.0, '
        '"client_errors": 0.0, "server_errors": 0.0, "validation_failures": 0.0}}}'
    )
    loaded = state.load_state("telco")
    assert loaded.last_fired_at == UNTIL and loaded.serving_counters.requests == 5.0
    assert loaded.to_json()["history"] == [
        {"at": "2026-03-01T12:00:00+00:00", "score": None, "action": "fire"}
    ]
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        state.load_state("telco")


# --- the HTML page ----------------------------------------------------------------------


def test_report_html_names_drifted_features():
    report = {
        "model_name": "telco",
        "drift": {
            "score": 0.6,
            "threshold": 0.3,
            "mode": "tests",
            "features": [
                {"feature": "tenure", "kind": "numeric", "method": "ks", "drifted": True},
                {"feature": "gender", "kind": "categorical", "method": "chi2", "drifted": False},
            ],
        },
        "decision": {"action": "fire", "reason": "<drift>"},
        "profiles": {"reference": {"tenure": {"n": 5, "mean": 1.0}}, "current": {}},
    }
    page = render_report_html(report)
    drifted = page.split("id='drifted-features'>")[1].split("</ul>")[0]
    assert "tenure" in drifted and "gender" not in drifted
    assert "&lt;drift&gt;" in page  # escaped


def test_the_performance_event_states_the_checks_text_once():
    """A multiclass retrain reason quotes the fixed-margin check: the event does not repeat it;
    a check the reasons do not quote is added after them."""
    q = checks.check_quality(_log(50), DS, checks.QualityConfig())
    check = "AUC 0.646 < 0.74 - 0.05"
    perf = checks.Performance(900, 0.646, None, None, 0.74, None, None, True, check)
    verdict = DriftDecision("quiet", False, 0, 2, "x")

    class Fake:
        reasons: list = []

        def emit_performance_degraded(self, name, evidence):
            self.reasons.append(evidence["reason"])
            return "id"

    for quoted in (f"realized loss on 900 labels of the window (multiclass): {check}", "other"):
        due = decision.Due(verdict, False, True, retrain_reasons=(quoted,))
        decision.emit_events(_report(q, verdict, performance=perf), due, Fake())
    assert [r.count(check) for r in Fake.reasons] == [1, 1]
    assert Fake.reasons[1] == f"other; {check}"
