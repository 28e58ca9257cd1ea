"""The monitor flow under a real Prefect server: drifted windows report and emit, quiet ones
do not, a schema break alerts without asking for a retrain."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import lightgbm as lgb
import numpy as np
import polars as pl
import pytest

from flows.monitor import MonitorConfig, monitor
from schemas import load_dataset
from schemas.records import TS
from tasks import registry
from tasks.drift import DriftConfig
from tasks.events import RecordingEmitter
from tasks.features import FeatureSpec, build_features, to_matrix
from tasks.monitoring import decision
from tasks.monitoring.policy import PolicyConfig
from tasks.profiling import save_reference_profile
from tasks.settings import get_settings
from tests.support.artifacts import latest_artifacts, table_rows
from tests.support.netns import wait_for

DS = load_dataset("telco")
UNTIL = datetime(2026, 3, 1, 12, tzinfo=UTC)


def telco_rows(n: int, rng: np.random.Generator, drifted: bool = False) -> pl.DataFrame:
    """Telco-shaped rows; ``drifted`` moves tenure down, charges up, contracts to monthly."""
    cols: dict[str, object] = {}
    for name in DS.feature_columns:
        info = DS.columns[name]
        if info.is_categorical:
            cols[name] = rng.choice(list(info.categories), n)
        elif name == "SeniorCitizen":
            cols[name] = rng.integers(0, 2, n)
    contracts = ["Month-to-month", "One year", "Two year"]
    cols["Contract"] = rng.choice(
        contracts, n, p=[0.9, 0.05, 0.05] if drifted else [0.5, 0.25, 0.25]
    )
    cols["tenure"] = rng.integers(0, 12 if drifted else 72, n)
    cols["MonthlyCharges"] = rng.uniform(70 if drifted else 18, 118, n)
    cols["TotalCharges"] = cols["tenure"] * cols["MonthlyCharges"]
    cols[DS.id_column] = [f"C{uuid.UUID(int=int(rng.integers(2**62))).hex[:10]}" for _ in range(n)]
    logit = 1.5 * (cols["Contract"] == "Month-to-month") - np.asarray(cols["tenure"]) / 20
    cols[DS.target] = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "Yes", "No")
    return pl.DataFrame(cols).select(DS.column_names)


@pytest.fixture(scope="module")
def champion(tmp_path_factory):
    """A champion trained on synthetic Telco rows, with its reference profile."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DRIFTLOOP_HOME", str(tmp_path_factory.mktemp("monitor-home")))
        rng = np.random.default_rng(7)
        train = telco_rows(2_000, rng)
        fspec = FeatureSpec.from_dataset(DS)
        X = to_matrix(build_features(train, fspec))
        y = (train[DS.target] == "Yes").to_numpy().astype(float)
        params = {"objective": "binary", "num_threads": 1, "verbose": -1, "seed": 1}
        booster = lgb.train(params, lgb.Dataset(X, y, feature_name=list(fspec.columns)), 30)
        gains = dict(
            zip(fspec.columns, map(float, booster.feature_importance("gain")), strict=True)
        )
        meta = {"metrics": {"roc_auc": 0.8, "precision": 0.6, "recall": 0.6}, "threshold": 0.5,
                "feature_importance": gains}  # fmt: skip
        tag = registry.save_model(booster, name="telco", features=fspec, metadata=meta)
        registry.set_alias("telco", "champion", tag, reason="test")
        save_reference_profile(train, booster.predict(X), tag, DS)
        yield registry.load_model(tag)


def write_log(model, *, drifted: bool, n: int = 600, drop: str | None = None, seed: int = 0):
    """A fresh prediction log (one Parquet file) of ``n`` scored rows in the hour to UNTIL."""
    settings = get_settings()
    folder = settings.predictions_dir
    assert "monitor-home" in str(folder)  # only ever clear our own temp dir
    for old in folder.glob("*.parquet"):
        old.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = telco_rows(n, rng, drifted).drop(DS.target)
    scores = model.predict(to_matrix(build_features(rows, model.features)))
    head = pl.DataFrame(
        {
            "request_id": [f"req-{seed}-{i}" for i in range(n)],
            "entity_id": rows[DS.id_column],
            "ts": pl.Series([UNTIL - timedelta(seconds=5 * (i + 1)) for i in range(n)], dtype=TS),
            "model_tag": [model.tag] * n,
            "score": scores,
            "decision": scores >= 0.5,
            "shadow_tag": pl.Series([None] * n, dtype=pl.String),
            "shadow_score": pl.Series([None] * n, dtype=pl.Float64),
            "latency_ms": rng.gamma(2.0, 3.0, n),
        }
    )
    frame = pl.concat([head, rows], how="horizontal")
    (frame.drop(drop) if drop else frame).write_parquet(folder / f"batch-{seed}.parquet")


# the policy before issue #14: input drift retrains, a label-free estimate does not
INPUT_DRIFT_ONLY = PolicyConfig(input_drift="retrain", retrain_on_estimated_loss=False)


def config(policy: PolicyConfig | None = None, **drift) -> MonitorConfig:
    d = {"hysteresis_windows": 1, "cooldown_minutes": 0, **drift}
    return MonitorConfig(window_minutes=60, until=UNTIL, drift=DriftConfig(**d),
                         policy=policy or PolicyConfig())  # fmt: skip


@pytest.fixture(autouse=True)
def fresh_state(champion):
    get_settings().monitor_state.unlink(missing_ok=True)


@pytest.fixture
def fake(monkeypatch) -> RecordingEmitter:
    """The monitor's default emitter replaced by a recorder for this test."""
    emitter = RecordingEmitter("fake")
    monkeypatch.setattr(decision, "default_emitter", lambda: emitter)
    return emitter


KEYS_ON_MAIN = json.loads((Path(__file__).parent / "monitor_keys_main.json").read_text())
_COLUMN_KEYED = {"profiles.reference", "profiles.current", "quality.missing_share",
                 "quality.violation_share", "quality.type_mismatches"}  # fmt: skip


def key_paths(doc, prefix: str = "") -> set[str]:
    """Every key path of a JSON document (list items as ``[]``; column-keyed maps not
    descended, their keys are data)."""
    out: set[str] = set()
    if isinstance(doc, dict):
        for k, v in doc.items():
            path = f"{prefix}.{k}" if prefix else k
            out.add(path)
            if path not in _COLUMN_KEYED:
                out |= key_paths(v, path)
    elif isinstance(doc, list):
        for v in doc:
            out |= key_paths(v, prefix + "[]")
    return out


def test_drifted_window_reports_and_emits_drift(champion, prefect_harness, fake):
    write_log(champion, drifted=True)
    report = monitor(config=config(INPUT_DRIFT_ONLY))  # drift itself retrains here
    assert report["decision"]["action"] == "fire"
    drifted = set(report["drift"]["drifted_features"])
    assert {"tenure", "Contract", "MonthlyCharges"} <= drifted
    assert report["drift"]["mode"] == "tests" and report["drift"]["prediction"]["drifted"]
    # the HTML names the drifted features in its list
    html = Path(report["report"]["html"]).read_text()
    listed = html.split("id='drifted-features'>")[1].split("</ul>")[0]
    assert all(f"<li>{f}</li>" in listed for f in drifted) and "gender" not in listed
    on_disk = json.loads(Path(report["report"]["json"]).read_text())
    assert on_disk["events"][0]["id"] == "fake-1"
    # the event and its evidence
    assert [(k, n) for k, n, _ in fake.events] == [("drift_detected", "telco")]
    ev = fake.events[0][2]
    assert ev["champion_tag"] == champion.tag and ev["score"] >= ev["threshold"] == 0.3
    tenure = next(f for f in ev["drifted_features"] if f["feature"] == "tenure")
    assert tenure["p_adjusted"] < 0.05 and tenure["wasserstein"] > 0.1 and tenure["method"] == "ks"
    assert ev["window"]["rows"] == 600 and ev["window"]["until"] == UNTIL.isoformat()
    assert Path(ev["reference_profile"]).exists() and Path(ev["current_profile"]).exists()
    assert ev["report_html"] == report["report"]["html"] and "drift score" in ev["reason"]
    assert _artifact_keys() >= {"monitor-telco", "monitor-telco-drift"}
    found = latest_artifacts("monitor-telco", "monitor-telco-drift", "monitor-telco-report")
    assert [found[k].type for k in sorted(found)] == ["markdown", "table", "markdown"]  # link
    assert "**600 rows**" in found["monitor-telco"].data
    assert f"Model `{champion.tag}`" in found["monitor-telco"].data
    link = Path(report["report"]["html"])
    assert found["monitor-telco-report"].data == f"[{link.name}]({link.as_uri()})"
    drift_rows = {r["feature"]: r for r in table_rows(found["monitor-telco-drift"])}
    assert {f for f, r in drift_rows.items() if r["drifted"]} == drifted
    assert "<svg" in html and "tenure: reference vs current" in html  # the pictures


def test_report_payload_and_state_keep_the_keys_they_had_on_main(champion, prefect_harness, fake):
    """The report JSON (returned and on disk), the drift event's payload and the state entry
    have exactly the key paths a run of the same kind produced before the report was typed."""
    write_log(champion, drifted=True, seed=8)
    report = monitor(config=config(INPUT_DRIFT_ONLY))  # a retrain request, as on main
    on_disk = json.loads(Path(report["report"]["json"]).read_text())
    assert list(on_disk) == list(report) == KEYS_ON_MAIN["report_key_order"]
    assert key_paths(report) == key_paths(on_disk) == set(KEYS_ON_MAIN["report"])
    (_, _, evidence), *_ = fake.events
    assert key_paths(evidence) == set(KEYS_ON_MAIN["drift_detected"])
    state = json.loads(get_settings().monitor_state.read_text())["telco"]
    assert key_paths(state) == set(KEYS_ON_MAIN["state"])


def test_in_distribution_window_stays_quiet(champion, prefect_harness, fake):
    write_log(champion, drifted=False, seed=3)
    report = monitor(config=config())
    assert fake.events == []
    assert report["decision"]["action"] == "quiet" and report["drift"]["drifted_features"] == []
    assert report["quality"]["ok"] and report["health"]["requests"] == 600
    assert "No feature drifted" in Path(report["report"]["html"]).read_text()


def test_schema_break_alerts_and_does_not_retrain(champion, prefect_harness, fake):
    write_log(champion, drifted=True, drop="Contract", seed=4)
    report = monitor(config=config())
    assert [k for k, _, _ in fake.events] == ["data_quality_failed"]
    assert fake.events[0][2]["reason"].startswith("schema break")
    assert report["drift"] is None and report["decision"]["action"] == "blocked"


def test_hysteresis_then_event_reaches_prefect(champion, prefect_harness):
    """Two drifting windows are needed; the second emits through tasks.events to Prefect."""
    from tasks import events

    write_log(champion, drifted=True, seed=5)
    first = monitor(config=config(INPUT_DRIFT_ONLY, hysteresis_windows=2))
    assert first["decision"]["action"] == "drifting" and first["events"] == []
    second = monitor(config=config(INPUT_DRIFT_ONLY, hysteresis_windows=2))
    assert second["decision"]["action"] == "fire"
    (sent,) = second["events"]
    assert sent["event"] == "drift_detected" and sent["id"]
    assert events.wait_confirmed([sent["id"]], timeout_s=30)
    stored = {r["id"]: r for r in events.sent_events()}[sent["id"]]
    assert stored["event"] == events.DRIFT_DETECTED
    assert stored["resource"]["prefect.resource.id"] == "driftloop.model.telco"
    assert stored["payload"]["report_html"] == second["report"]["html"]


def _artifact_keys() -> set[str]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return {a.key for a in client.read_artifacts() if a.key}


@pytest.fixture
def restore_env():
    """The CLI exports its library env (Settings.apply_env); keep it out of other tests."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_cli_monitor_json(champion, prefect_harness, restore_env):
    from typer.testing import CliRunner

    from driftloop.cli import build_app

    write_log(champion, drifted=True, seed=6)
    args = ["monitor", "--json", "--until", UNTIL.isoformat(), "--window-minutes", "60",
            "--hysteresis", "1", "--cooldown-minutes", "0"]  # fmt: skip
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)  # exactly one JSON object
    assert key_paths(out) == set(KEYS_ON_MAIN["cli_summary"])
    assert out["action"] == "fire" and "tenure" in out["drifted_features"]
    # the default policy retrains on the estimated loss: these drifted rows cost the champion
    # about 0.2 ROC AUC (realized 0.57 against 0.79 on undrifted rows), and the spline-calibrated
    # estimate (0.81, interval 0.76-0.87, against 0.93 on the reference) shows it
    assert [e["event"] for e in out["events"]] == ["drift_detected"]
    assert Path(out["report_html"]).exists()
    bad = CliRunner().invoke(build_app(), ["monitor", "--until", "yesterday"])
    assert bad.exit_code == 1 and "ISO 8601" in bad.stderr


SERVICE_METRICS = """# TYPE bentoml_api_server_request_total counter
bentoml_api_server_request_total{endpoint="/predict",http_response_code="200"} 150.0
bentoml_api_server_request_total{endpoint="/predict",http_response_code="503"} 50.0
"""


def test_cli_monitor_reads_the_service_named_by_serving_url(champion, prefect_harness, restore_env):
    """``--serving-url``: the service's counters are in the report (a real HTTP server serving
    Prometheus text); a bad URL is one error line naming the option, before any run."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from typer.testing import CliRunner

    from driftloop.cli import build_app

    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200 if self.path == "/metrics" else 404)
            self.end_headers()
            self.wfile.write(SERVICE_METRICS.encode() if self.path == "/metrics" else b"")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    write_log(champion, drifted=False, seed=15)
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    args = ["monitor", "--json", "--until", UNTIL.isoformat(), "--window-minutes", "60",
            "--serving-url", url]  # fmt: skip
    try:
        result = CliRunner().invoke(build_app(), args)
    finally:
        server.shutdown()
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["health"]["error_source"].startswith("service /metrics")
    assert out["health"]["error_rate"] == pytest.approx(0.25)  # 50 of 200 answers were 5xx
    saved = json.loads(Path(out["report_json"]).read_text())
    assert saved["config"]["serving_url"] == url.rstrip("/")
    for bad, why in (("ftp://127.0.0.1:3000", "http(s) URL"), ("127.0.0.1:3000", "http(s) URL"),
                     ("http://127.0.0.1:99999", "invalid port"), ("http://:3000", "with a host"),
                     ("http://h:3000/?x=1", "no query")):  # fmt: skip
        failed = CliRunner().invoke(build_app(), ["monitor", "--serving-url", bad])
        assert failed.exit_code == 1, (bad, failed.output)
        lines = failed.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: --serving-url"), (bad, lines)
        assert why in lines[0] and "Traceback" not in failed.output


def test_steps_are_task_runs_and_estimates_are_an_artifact(champion, prefect_harness, fake):
    """The flow run's timeline shows the monitor's steps; estimated vs realized per window
    is a table artifact."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    write_log(champion, drifted=False, seed=11)
    state = monitor(config=config(), return_state=True)
    report = state.result()
    assert report["evidence"]["estimate"]["metrics"]["roc_auc"]["value"] > 0.5
    assert report["evidence"]["windows"][-1]["predictions"] == 600
    run_id = state.state_details.flow_run_id
    steps = {"load_window", "check_quality", "profile_window", "check_drift", "load_estimators",
             "gather_evidence", "decide_window", "write_report", "emit_events"}  # fmt: skip
    runs: list = []

    def recorded() -> bool:  # task-run states reach the API as events, after the flow returns
        nonlocal runs
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
            )
        names = {r.name.rsplit("-", 1)[0] for r in runs}
        return steps <= names and all(r.state and r.state.is_final() for r in runs)

    wait_for(recorded, timeout=60, interval=0.5, what="every task run recorded in a final state")
    assert steps <= {r.name.rsplit("-", 1)[0] for r in runs}
    assert all(r.state.is_completed() for r in runs)
    assert "monitor-telco-performance" in _artifact_keys()


def test_run_monitor_is_the_same_run_without_the_engine(champion, fake):
    """The replay's entry point: same report, no Prefect flow or task run (no API needed)."""
    from flows.monitor import run_monitor

    write_log(champion, drifted=True, seed=12)
    report = run_monitor(config(INPUT_DRIFT_ONLY))
    assert report["decision"]["action"] == "fire" and report["verdict"] is not None
    assert [k for k, _, _ in fake.events] == ["drift_detected"]
    assert fake.events[0][2]["retrain"] is True


def test_report_page_draws_the_estimate_across_windows(champion, fake):
    """The HTML page's 'across windows' chart reads each report's label-free estimate where
    the report keeps it: two runs with estimates give an estimated-AUC line of two points."""
    from flows.monitor import run_monitor
    from tasks.monitoring.html import recent_windows

    folder = get_settings().reports_dir / "monitor"
    for old in folder.glob("*"):
        old.unlink()
    reports = []
    for seed in (13, 14):
        write_log(champion, drifted=False, seed=seed)
        reports.append(run_monitor(config()))
    estimates = [r["evidence"]["estimate"]["metrics"]["roc_auc"]["value"] for r in reports]
    assert all(0.5 < e < 1 for e in estimates)
    points = recent_windows(folder)
    assert [p.estimated_auc for p in points] == pytest.approx(estimates)
    page = Path(reports[-1]["report"]["html"]).read_text()
    chart = page.split("<title>performance</title>")[1].split("</svg>")[0]
    assert "estimated AUC" in chart
    line = chart.split("stroke='#2ca02c'")[0].rsplit("<polyline points='", 1)[1]
    assert len(line.split("'")[0].split()) == 2  # one point per run
