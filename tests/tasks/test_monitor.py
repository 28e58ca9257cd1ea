"""tasks.monitor: window, data quality, performance on feedback, health, evidence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from schemas import load_dataset
from schemas.records import TS
from tasks import monitor as m
from tasks.drift import DriftConfig, DriftDecision
from tasks.settings import get_settings

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


def _champion(**metrics) -> m.Champion:
    return m.Champion("telco", "telco:v1", metrics, None, 0.5, None)


def test_window_bounds_and_loading(home):
    settings = get_settings()
    settings.predictions_dir.mkdir(parents=True)
    frame = _log(100)
    frame.write_parquet(settings.predictions_dir / "a.parquet")
    _log(10, seed=1, minutes=200).write_parquet(settings.predictions_dir / "b.parquet")
    bounds = m.window_bounds(60, UNTIL)
    assert bounds.since == UNTIL - timedelta(hours=1) and bounds.minutes == 60
    window = m.load_window(bounds, settings)
    assert window.height == 100 + 3  # the older file has 3 rows inside the last hour
    assert window["ts"].max() < UNTIL


def test_quality_of_a_clean_window():
    q = m.check_quality(_log(300), DS, m.QualityConfig())
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
    q = m.check_quality(frame, DS, m.QualityConfig(max_missing_share=0.2))
    assert not q.ok and not q.schema_break
    assert q.missing_share["tenure"] == pytest.approx(0.5)
    assert q.violation_share["Contract"] == pytest.approx(0.15)
    assert q.violation_share["MonthlyCharges"] == pytest.approx(0.10)
    assert any("tenure" in i for i in q.issues) and any("Contract" in i for i in q.issues)


def test_schema_break_missing_column_and_wrong_type():
    frame = _log(50).drop("Contract").with_columns(pl.col("tenure").cast(pl.String))
    q = m.check_quality(frame, DS, m.QualityConfig())
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
    config = m.PerformanceConfig(min_labels=100, max_auc_drop=0.05)
    champ = _champion(roc_auc=0.80, precision=0.6, recall=0.7)
    good = m.compute_performance(window, _labels(window, 0.0), champ, config)
    assert good.labelled == 400 and good.auc > 0.75 and not good.degraded
    bad = m.compute_performance(window, _labels(window, 0.45), champ, config)
    assert bad.degraded and bad.auc < 0.75 and "AUC" in bad.reason
    few = m.compute_performance(window, _labels(window.head(50), 0.45), champ, config)
    assert few.labelled == 50 and not few.degraded and "min_labels" in few.reason
    none = m.compute_performance(window, _labels(window.head(0), 0.0), champ, config)
    assert none.labelled == 0 and none.auc is None


def test_health_rate_latency_errors():
    window = _log(600).with_columns(
        pl.when(pl.int_range(600) < 60).then(None).otherwise(pl.col("score")).alias("score")
    )
    h = m.compute_health(window, m.window_bounds(60, UNTIL), m.HealthConfig(max_error_rate=0.05))
    assert h.requests == 600 and h.rate_per_min == pytest.approx(10.0)
    assert h.latency_p50_ms < h.latency_p95_ms <= h.latency_p99_ms
    assert h.error_rate == pytest.approx(0.1) and not h.ok
    counts = m.ServingCounters(requests=20, client_errors=2, server_errors=10)
    served = m.compute_health(_log(10), m.window_bounds(60, UNTIL), m.HealthConfig(), counts)
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
    now = m.parse_serving_metrics(METRICS)
    assert now == m.ServingCounters(100.0, 8.0, 2.0, 11.0)  # probes not counted
    assert now.minus(m.ServingCounters(40.0, 1.0, 0.0, 1.0)) == m.ServingCounters(60, 7, 2, 10)
    assert now.minus(m.ServingCounters(400.0)) == now  # the service restarted: count from 0
    q = m.check_quality(_log(50), DS, m.QualityConfig(max_rejected_share=0.05), now)
    assert not q.ok and q.serving_rejected == 8.0 and "rejected 8.0%" in q.issues[0]
    assert m.serving_counters("telco", None) is None


def test_importance_is_read_defensively():
    assert m._importance({"feature_importance": {"a": 2, "b": 1}}) == {"a": 2.0, "b": 1.0}
    assert m._importance({"feature_importance": [["a", 1]]}) == {"a": 1.0}
    assert m._importance({"feature_importance": {"gain": {"a": 3}}}) == {"a": 3.0}
    assert m._importance({}) is None and m._importance({"importance": "x"}) is None


def test_quality_failure_blocks_the_drift_decision(home):
    q = m.check_quality(_log(50).drop("Contract"), DS, m.QualityConfig())
    perf = m.Performance(0, None, None, None, None, None, None, False, "")
    due = m.decide_window(None, q, perf, _champion(), DriftConfig(), UNTIL)
    assert due["decision"].action == "blocked" and not due["drift_fire"]

    class Fake:
        calls: list = []

        def emit_data_quality_failed(self, name, evidence):
            self.calls.append((name, evidence))
            return "id-1"

    report = m.build_report(model_name="telco", champion_tag="telco:v1", drift=None,
                            decision=due["decision"], quality=q,
                            report={"json": "r.json", "html": "r.html"})  # fmt: skip
    sent = m.emit_events(report, due, q, Fake())
    assert [e["event"] for e in sent] == ["data_quality_failed"]
    name, ev = Fake.calls[0]
    assert name == "telco" and ev["reason"].startswith("schema break")
    assert ev["report_html"] == "r.html" and "missing column Contract" in ev["quality_issues"]


def test_build_report_is_plain_json():
    decision = DriftDecision("quiet", False, 0, 2, "x")
    rep = m.build_report(a=np.float64(1.5), b=float("nan"), when=UNTIL, d=decision)
    assert rep == {"a": 1.5, "b": None, "when": UNTIL.isoformat(), "d": decision.to_dict()}


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
        assert m.serving_counters("telco", url).requests == 100.0  # first scrape: since start
        assert m.serving_counters("telco", url) == m.ServingCounters(100.0, 0.0, 0.0, 0.0)
        assert m.serving_counters("telco", url) is None  # 404 now: no answer, no numbers
    finally:
        server.shutdown()


def test_window_of_files_with_different_schemas_is_a_schema_break(home):
    settings = get_settings()
    settings.predictions_dir.mkdir(parents=True)
    _log(20).write_parquet(settings.predictions_dir / "a.parquet")
    broken = _log(30, seed=1).with_columns(pl.col("tenure").cast(pl.String)).drop("Contract")
    broken.write_parquet(settings.predictions_dir / "b.parquet")
    (settings.predictions_dir / ".c.parquet.tmp.parquet").write_bytes(b"half a file")
    window = m.load_window(m.window_bounds(60, UNTIL), settings)
    assert window.height == 50
    q = m.check_quality(window, DS, m.QualityConfig())
    assert q.schema_break and "tenure" in q.type_mismatches
    assert q.missing_share["Contract"] == pytest.approx(30 / 50)  # absent from one file


def test_drift_and_degraded_performance_in_one_run_trigger_one_retrain(home):
    """Both due in the same window: one drift event (carrying the performance evidence), not
    two events that would start two retrains; and the performance alarm then cools down."""
    from types import SimpleNamespace

    q = m.check_quality(_log(50), DS, m.QualityConfig())
    perf = m.Performance(500, 0.6, 0.5, 0.4, 0.84, 0.6, 0.7, True, "AUC fell 0.24")
    drifting = SimpleNamespace(drifting=True, window_rows=500, score=0.9)
    config = DriftConfig(hysteresis_windows=1, min_window_rows=10)
    due = m.decide_window(drifting, q, perf, _champion(), config, UNTIL)
    assert due["drift_fire"] and not due["performance_fire"]
    later = UNTIL + timedelta(minutes=5)
    quiet = SimpleNamespace(drifting=False, window_rows=500, score=0.1)
    again = m.decide_window(quiet, q, perf, _champion(), config, later)
    assert not again["performance_fire"], "cooldown after the drift fire covers performance"


def test_an_empty_window_is_not_a_schema_break():
    q = m.check_quality(pl.DataFrame(), DS, m.QualityConfig())
    assert q.ok and not q.schema_break and q.rows == 0
