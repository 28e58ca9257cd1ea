"""Observability test kit: the shipped kit's files and expressions, a monitor report, and a
real Prometheus (Debian's package) on a free loopback port with its own storage."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parents[2]
KIT = REPO / "deploy" / "observability"
PROMETHEUS_YML = KIT / "prometheus.yml"
RULES = KIT / "rules" / "driftloop.rules.yml"
DASHBOARD = KIT / "grafana" / "dashboards" / "driftloop.json"
PROVISIONING = KIT / "grafana" / "provisioning"
JOB = "driftloop"
# the Grafana variables the dashboard may use, and what they stand for in a test
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$job": JOB}


def binary(name: str) -> str:
    """A system binary `make sysdeps` installs; a clear failure (not a skip) when missing."""
    path = shutil.which(name)
    assert path, f"{name} not found: run `make sysdeps` (Debian package prometheus)"
    return path


# --- the kit's expressions -------------------------------------------------------------------


def rule_groups() -> list[dict]:
    return yaml.safe_load(RULES.read_text())["groups"]


def rules() -> list[dict]:
    return [r for g in rule_groups() for r in g["rules"]]


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_targets() -> list[tuple[str, str]]:
    """(panel title, PromQL with Grafana's variables as written) of every panel target."""
    out = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    return out


def dashboard_variable_queries() -> list[tuple[str, str]]:
    """``label_values(metric, label)`` variables as (variable name, PromQL that must answer)."""
    out = []
    for var in dashboard()["templating"]["list"]:
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["query"]["query"])
        assert m, f"variable {var['name']}: unsupported query {var['query']}"
        out.append((var["name"], f"count by ({m[2]}) ({m[1]})"))
    return out


def substitute(expr: str) -> str:
    for name, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


_COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")


def as_bool(expr: str) -> str:
    """The alert expression with its outermost comparison made ``bool``: it then returns a
    0/1 sample whether or not the alert fires, so "returns data" can be asserted."""
    depth, quote, last = 0, None, None
    i = 0
    while i < len(expr):
        c = expr[i]
        if quote:
            quote = None if c == quote else quote
        elif c in "\"'`":
            quote = c
        elif c in "({[":
            depth += 1
        elif c in ")}]":
            depth -= 1
        elif depth == 0:
            op = next((o for o in _COMPARISONS if expr.startswith(o, i)), None)
            if op and expr[i + len(op) : i + len(op) + 1] != "~":
                last = (i, op)
                i += len(op)
                continue
        i += 1
    assert last, f"alert expression without a top-level comparison: {expr!r}"
    at = last[0] + len(last[1])
    return f"{expr[:at]} bool{expr[at:]}"


# --- a monitor report as the monitor writes it -------------------------------------------------


def write_monitor_report(home: Path, champion_tag: str, now: datetime | None = None) -> dict:
    """A report of the monitor's own type (``MonitorReport``): the window drifts
    (score 0.42 >= 0.3) and its 150 labelled rows give AUC 0.71 against the champion's 0.84."""
    from tasks.drift import DriftDecision, DriftResult, FeatureDrift
    from tasks.monitoring.checks import Health, Performance, Quality
    from tasks.monitoring.report import MonitorReport, WindowSummary
    from tasks.monitoring.window import run_stamp

    now = now or datetime.now(UTC)
    tenure = FeatureDrift("tenure", "numeric", "ks", True, 0.6, statistic=0.3, p_value=0.001)
    drift = DriftResult("tests", 0.42, 0.3, True, 400, [tenure], None)
    perf = Performance(150, 0.71, 0.5, 0.4, 0.84, 0.64, 0.55, True, "auc dropped 0.13")
    health = Health(400, 40.0, 3.0, 5.0, 8.0, 0.0, "window", True, [])
    decision = DriftDecision("fire", True, 2, 2, "drift persisted")
    report = MonitorReport(
        run_at=now, model_name="telco", champion_tag=champion_tag, config={},
        window=WindowSummary(since=now, until=now, rows=400), drift=drift, decision=decision,
        quality=Quality(rows=400), performance=perf, health=health,
        reference_profile=home / "ref.bin", current_profile=home / "cur.bin", profiles={},
    ).to_json()  # fmt: skip
    folder = home / "reports" / "monitor"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{run_stamp(now)}.json").write_text(json.dumps(report))
    return report


# --- a real Prometheus -------------------------------------------------------------------------


def scrape_config(target: str, interval: str = "1s") -> dict:
    """The shipped prometheus.yml, pointed at ``target``, scraping and evaluating every second,
    with its rule files made absolute."""
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    config["global"].update(scrape_interval=interval, evaluation_interval=interval)
    config["rule_files"] = [str(KIT / pattern) for pattern in config["rule_files"]]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == JOB]
    job["static_configs"] = [{"targets": [target]}]
    return config


class Prometheus:
    """``prometheus`` on 127.0.0.1:``port`` with storage in ``workdir``; stop() always."""

    def __init__(self, workdir: Path, port: int, config: dict) -> None:
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = workdir / "prometheus.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                binary("prometheus"),
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"prometheus exited:\n{self.log()}"
            with contextlib.suppress(httpx.HTTPError):
                if self.client.get("/-/ready").status_code == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"prometheus not ready in {timeout}s:\n{self.log()}")

    def query(self, expr: str) -> list[dict]:
        """The instant vector (or scalar as one sample) ``expr`` evaluates to now."""
        answer = self.client.get("/api/v1/query", params={"query": expr}).json()
        assert answer["status"] == "success", f"{expr!r}: {answer}"
        data = answer["data"]
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def wait_for(self, expr: str, timeout: float = 30) -> list[dict]:
        """The first non-empty answer to ``expr`` within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.query(expr)
            if result:
                return result
            time.sleep(0.5)
        raise TimeoutError(f"no data for {expr!r} in {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()


def values(result: list[dict]) -> list[float]:
    return [float(sample["value"][1]) for sample in result]
