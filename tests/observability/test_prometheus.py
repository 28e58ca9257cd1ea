"""The observability kit against a real Prometheus scraping a real ``driftloop serve``.

One server (champion A, a monitor report on disk) and one Prometheus (the shipped config at a
1 s interval, the shipped rules) per module, on loopback, torn down in ``finally``. Every
PromQL expression of the dashboard and the rules must return data, so a renamed or vanished
series fails here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import promkit
import pytest
from promkit import Prometheus, as_bool, binary, substitute, values

from driftloop.supervise import free_port
from tasks import registry
from tasks.io import atomic_write
from tasks.settings import Settings
from tests.support.models import save_tiny as save
from tests.support.models import tiny_models
from tests.support.server import Server, make_home, predict

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Stack:
    server: Server
    prometheus: Prometheus
    settings: Settings
    tags: dict[str, str]


def _traffic(server: Server, records: list[dict]) -> None:
    for i in range(20):
        assert predict(server, records[i * 5 : i * 5 + 5]).status_code == 200
    for bad in ({"records": [{"tenure": "many"}]}, {"records": []}, {"rows": 1}):
        assert server.client.post("/predict", json=bad).status_code == 400


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    binary("prometheus")
    models = tiny_models()
    home = make_home("observe")
    settings = Settings(home=home)
    settings.ensure_dirs()
    tags = {
        "a": save(models.a, models.features, settings, "a"),
        "b": save(models.b, models.features, settings, "b"),
    }
    registry.set_alias("telco", registry.CHAMPION, tags["a"], settings=settings)
    promkit.write_monitor_report(home, tags["a"])
    server = Server(home, free_port(), {"DRIFTLOOP_PROCESS_METRICS_SECONDS": "1"})
    prometheus = None
    workdir = Path(tempfile.mkdtemp(prefix="driftloop-prometheus-"))
    try:
        server.wait_ready()
        _traffic(server, models.records)
        config = promkit.scrape_config(f"127.0.0.1:{server.port}")
        prometheus = Prometheus(workdir, free_port(), config)
        prometheus.wait_ready()
        # 5 scrapes: every rate() has two samples, the flushed score histogram is in
        prometheus.wait_for(f'count_over_time(up{{job="{promkit.JOB}"}}[1m]) >= 5', timeout=60)
        _traffic(server, models.records)  # traffic between scrapes: rates above zero
        prometheus.wait_for("driftloop:workers_serving_non_champion:count", timeout=30)
        time.sleep(3)
        yield Stack(server, prometheus, settings, tags)
    finally:
        if prometheus is not None:
            prometheus.stop()
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)


def test_promtool_accepts_the_shipped_config_rules_and_the_test_config(stack: Stack) -> None:
    promtool = binary("promtool")
    for args in (
        ["check", "config", str(promkit.PROMETHEUS_YML)],
        ["check", "rules", str(promkit.RULES)],
        ["check", "config", str(stack.prometheus.config_path)],
    ):
        done = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}{done.stderr}"


def test_prometheus_scrapes_the_service(stack: Stack) -> None:
    (target,) = stack.prometheus.client.get("/api/v1/targets").json()["data"]["activeTargets"]
    assert target["health"] == "up", target
    assert target["scrapeUrl"] == f"{stack.server.url}/metrics"


def test_every_dashboard_expression_returns_data(stack: Stack) -> None:
    empty = [
        (title, expr)
        for title, expr in promkit.dashboard_targets()
        if not stack.prometheus.query(substitute(expr))
    ]
    empty += [
        (f"variable {name}", expr)
        for name, expr in promkit.dashboard_variable_queries()
        if not stack.prometheus.query(expr)
    ]
    assert not empty, f"dashboard expressions without data: {empty}"


def test_every_rule_is_loaded_healthy_and_returns_data(stack: Stack) -> None:
    shipped = promkit.rules()
    loaded = [
        r
        for g in stack.prometheus.client.get("/api/v1/rules").json()["data"]["groups"]
        for r in g["rules"]
    ]
    assert len(loaded) == len(shipped), "Prometheus did not load every shipped rule"
    unhealthy = [(r["name"], r.get("lastError")) for r in loaded if r["health"] != "ok"]
    assert not unhealthy, unhealthy
    empty = []
    for rule in shipped:
        # a recording rule: its expression and its recorded series; an alert: 0/1 either way
        record = rule.get("record")
        checks = [rule["expr"], record] if record else [as_bool(rule["expr"])]
        empty += [(rule.get("record") or rule["alert"], e) for e in checks if not _has(stack, e)]
    assert not empty, f"rule expressions without data: {empty}"


def _has(stack: Stack, expr: str) -> bool:
    return bool(stack.prometheus.query(expr))


def test_process_series_per_worker_and_the_served_champion(stack: Stack) -> None:
    p = stack.prometheus
    (rss,) = p.query('driftloop_process_resident_memory_bytes{job="driftloop"}')
    assert rss["metric"]["pid"].isdigit() and float(rss["value"][1]) > 50e6
    assert values(p.query("driftloop_process_threads"))[0] >= 2
    assert values(p.query("rate(driftloop_process_cpu_seconds[1m])"))[0] >= 0
    up_then = values(p.query("driftloop_process_uptime_seconds"))[0]
    time.sleep(2.5)
    assert values(p.query("driftloop_process_uptime_seconds"))[0] >= up_then + 1
    started = values(p.query("driftloop_process_start_time_seconds"))[0]
    assert abs(time.time() - started - values(p.query("driftloop_process_uptime_seconds"))[0]) < 5
    served = p.query('driftloop_model_info{alias="champion"} == 1')
    assert [s["metric"]["model_tag"] for s in served] == [stack.tags["a"]]
    assert values(p.query("driftloop:workers_serving_non_champion:count")) == [0.0]


def test_monitor_report_numbers_and_their_alerts(stack: Stack) -> None:
    p = stack.prometheus
    assert values(p.query('driftloop_monitor_drift_score{model_name="telco"}')) == [0.42]
    assert values(p.query("driftloop_monitor_drifted_features")) == [1.0]
    realized = p.query('driftloop_monitor_performance{source="realized", metric="auc"}')
    assert values(realized) == [0.71]
    assert values(p.query("time() - driftloop_monitor_last_run_timestamp_seconds"))[0] < 600
    firing = _firing(stack)
    assert {"DriftloopDataDrift", "DriftloopPerformanceDegraded"} <= firing
    assert not firing & {"DriftloopMonitorStale", "DriftloopDataQualityFailed"}


def _firing(stack: Stack) -> set[str]:
    alerts = stack.prometheus.client.get("/api/v1/alerts").json()["data"]["alerts"]
    return {a["labels"]["alertname"] for a in alerts}


def test_a_champion_the_service_cannot_load_shows_as_a_non_champion_worker(stack: Stack) -> None:
    """Last in the module: it damages model B and points the champion alias at it."""
    settings, b = stack.settings, stack.tags["b"]
    model_file = registry.model_path(b, settings) / registry.MODEL_FILE
    model_file.write_text(model_file.read_text().replace("num_leaves=15", "num_leaves=16", 1))
    index = registry.read_index(settings)
    index["telco"]["aliases"][registry.CHAMPION] = b  # no registry checks: damaged after the fact
    atomic_write(settings.alias_index, json.dumps(index).encode())
    p = stack.prometheus
    p.wait_for("driftloop:workers_serving_non_champion:count == 1", timeout=30)
    assert [s["metric"]["model_tag"] for s in p.query("driftloop_registry_alias_info == 1")] == [b]
    assert values(p.query('driftloop_model_swaps_total{outcome="failed"}')) == [1.0]
