"""The serving worker's process series, model series and monitor-report series, in process."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import promkit
import pytest
from prometheus_client import CollectorRegistry

from bentos import report_metrics
from bentos.process_metrics import ProcessMetrics, observed_gauges, sample_process
from tasks.io import atomic_write
from tasks.settings import Settings


@dataclass(frozen=True)
class _Model:
    tag: str


@dataclass
class _Models:
    champion: _Model | None
    challenger: _Model | None = None


def _point(settings: Settings, **aliases: str) -> None:
    index = {"telco": {"aliases": aliases, "history": []}}
    atomic_write(settings.alias_index, json.dumps(index).encode())


@pytest.fixture
def observed(tmp_path: Path):
    settings = Settings(home=tmp_path / "home")
    settings.ensure_dirs()
    reg = CollectorRegistry()
    models = _Models(_Model("telco:a"))
    metrics = ProcessMetrics("telco", settings, lambda: models, observed_gauges(reg))
    return metrics, models, reg, settings


def test_sample_process_reads_memory_and_a_growing_uptime_and_cpu() -> None:
    first = sample_process()
    assert first.resident_memory_bytes > 10e6
    assert first.threads >= 1 and first.open_fds >= 3
    assert abs(time.time() - first.uptime_seconds - first.start_time_seconds) < 1
    busy = time.process_time() + 0.2
    while time.process_time() < busy:
        pass
    second = sample_process()
    assert second.uptime_seconds > first.uptime_seconds
    assert second.cpu_seconds >= first.cpu_seconds + 0.15
    assert second.start_time_seconds == first.start_time_seconds


def test_tick_publishes_process_series(observed) -> None:
    metrics, _, reg, _ = observed
    sample = metrics.tick()
    rss = reg.get_sample_value("driftloop_process_resident_memory_bytes")
    assert rss == sample.resident_memory_bytes > 0
    up = reg.get_sample_value("driftloop_process_uptime_seconds")
    time.sleep(0.05)
    metrics.tick()
    assert reg.get_sample_value("driftloop_process_uptime_seconds") > up
    for name in ("cpu_seconds", "start_time_seconds", "open_fds", "threads"):
        assert reg.get_sample_value(f"driftloop_process_{name}") > 0, name


def test_model_series_follow_the_served_and_the_named_models(observed) -> None:
    metrics, models, reg, settings = observed
    _point(settings, champion="telco:a")
    metrics.tick()

    def info(series: str, tag: str, alias: str = "champion") -> float | None:
        return reg.get_sample_value(series, {"alias": alias, "model_tag": tag})

    assert info("driftloop_model_info", "telco:a") == 1
    assert info("driftloop_registry_alias_info", "telco:a") == 1
    _point(settings, champion="telco:b", challenger="telco:a")  # promoted; not yet swapped
    metrics.tick()
    assert info("driftloop_registry_alias_info", "telco:b") == 1
    assert info("driftloop_registry_alias_info", "telco:a") == 0
    assert info("driftloop_registry_alias_info", "telco:a", "challenger") == 1
    assert info("driftloop_model_info", "telco:a") == 1  # the worker still serves a
    models.champion, models.challenger = _Model("telco:b"), _Model("telco:a")
    metrics.tick()
    assert info("driftloop_model_info", "telco:b") == 1
    assert info("driftloop_model_info", "telco:a") == 0
    models.challenger = None
    metrics.tick()
    assert info("driftloop_model_info", "telco:a", "challenger") == 0


def test_monitor_report_series_from_the_newest_report(observed) -> None:
    metrics, _, reg, settings = observed
    metrics.tick()  # no report yet: the monitor never ran
    telco = {"model_name": "telco"}
    assert reg.get_sample_value("driftloop_monitor_last_run_timestamp_seconds", telco) == 0
    assert math.isnan(reg.get_sample_value("driftloop_monitor_drift_score", telco))

    then = datetime.now(UTC) - timedelta(minutes=15)
    promkit.write_monitor_report(settings.home, "telco:a", now=then)
    metrics.tick()

    def value(series: str, **labels: str) -> float | None:
        return reg.get_sample_value(series, {**telco, **labels})

    assert value("driftloop_monitor_last_run_timestamp_seconds") == then.timestamp()
    assert value("driftloop_monitor_drift_score") == 0.42
    assert value("driftloop_monitor_drift_threshold") == 0.3
    assert value("driftloop_monitor_drifted_features") == 1
    assert value("driftloop_monitor_drifting") == 1
    assert value("driftloop_monitor_quality_ok") == 1
    assert value("driftloop_monitor_window_rows") == 400
    assert value("driftloop_monitor_labelled_rows") == 150
    assert value("driftloop_monitor_performance_degraded") == 1
    assert value("driftloop_monitor_performance", source="realized", metric="auc") == 0.71
    assert value("driftloop_monitor_performance", source="champion_test", metric="recall") == 0.55

    # a newer report without labels: the realized numbers go NaN, not stale
    now = datetime.now(UTC)
    report = promkit.write_monitor_report(settings.home, "telco:a", now=now)
    report["performance"].update(labelled=0, auc=None, precision=None, recall=None)
    newest = report_metrics.latest_report(report_metrics.monitor_reports_dir(settings))
    atomic_write(newest, json.dumps(report).encode())  # rewritten in place, as the monitor does
    metrics.tick()
    assert value("driftloop_monitor_last_run_timestamp_seconds") == now.timestamp()
    assert math.isnan(value("driftloop_monitor_performance", source="realized", metric="auc"))
    assert value("driftloop_monitor_performance", source="champion_test", metric="auc") == 0.84


def test_an_unreadable_report_keeps_the_last_numbers(observed, caplog) -> None:
    metrics, _, reg, settings = observed
    promkit.write_monitor_report(settings.home, "telco:a")
    metrics.tick()
    folder = report_metrics.monitor_reports_dir(settings)
    (folder / "99999999T000000.000000Z.json").write_text("{not json")
    past = time.time_ns() - 10**10
    os.utime(folder, ns=(past, past))  # settled: read once, then left alone
    metrics.tick()
    metrics.tick()
    score = reg.get_sample_value("driftloop_monitor_drift_score", {"model_name": "telco"})
    assert score == 0.42
    assert sum("unreadable" in r.message for r in caplog.records) == 1


def test_every_snapshot_number_has_a_series(tmp_path) -> None:
    report = promkit.write_monitor_report(tmp_path, "telco:a")
    snap = report_metrics.snapshot_from_report(report, "telco")
    assert set(snap.scalars) == set(report_metrics._SCALARS)
    assert snap.scalars["drift_score"] == 0.42 and snap.scalars["drifted_features"] == 1
    never = report_metrics.read_snapshot(None, "telco")
    assert set(never.scalars) <= set(report_metrics._SCALARS) and never.scalars["run_at"] == 0.0


def test_thread_starts_publishing_at_once_and_stops(observed) -> None:
    metrics, _, reg, _ = observed
    metrics.interval = 0.05
    metrics.start()
    try:
        assert reg.get_sample_value("driftloop_process_threads") >= 2
        up = reg.get_sample_value("driftloop_process_uptime_seconds")
        time.sleep(0.3)
        assert reg.get_sample_value("driftloop_process_uptime_seconds") > up
    finally:
        metrics.stop()
    assert not metrics._every.alive


def test_the_report_folder_is_read_again_only_when_it_changed(observed) -> None:
    metrics, _, reg, settings = observed
    report = promkit.write_monitor_report(settings.home, "telco:a")
    folder = report_metrics.monitor_reports_dir(settings)
    past = time.time_ns() - 10**10
    os.utime(folder, ns=(past, past))
    metrics.tick()
    newest = report_metrics.latest_report(folder)
    report["drift"]["score"] = 0.05
    newest.write_text(json.dumps(report))  # same folder mtime: not looked at again
    os.utime(folder, ns=(past, past))
    metrics.tick()
    telco = {"model_name": "telco"}
    assert reg.get_sample_value("driftloop_monitor_drift_score", telco) == 0.42
    os.utime(folder)  # the folder changed (now): re-read
    metrics.tick()
    assert reg.get_sample_value("driftloop_monitor_drift_score", telco) == 0.05
