"""The kit's files on their own: they parse, they agree with each other and with the code."""

from __future__ import annotations

import re

import promkit
import pytest
import yaml
from promkit import as_bool, substitute

from tasks.monitoring.checks import HealthConfig, QualityConfig


def test_the_kit_parses() -> None:
    for path in promkit.KIT.rglob("*.yml"):
        assert yaml.safe_load(path.read_text()), path
    assert promkit.dashboard_targets() and promkit.rules()


def test_dashboard_uses_the_provisioned_datasource_and_known_variables() -> None:
    (source,) = yaml.safe_load(
        (promkit.PROVISIONING / "datasources" / "driftloop.yml").read_text()
    )["datasources"]
    board = promkit.dashboard()
    used = {p["datasource"]["uid"] for p in board["panels"] if "datasource" in p}
    used |= {v["datasource"]["uid"] for v in board["templating"]["list"]}
    assert used == {source["uid"]}
    for _, expr in promkit.dashboard_targets():
        substitute(expr)  # raises on a variable the Prometheus test could not stand in for
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    (provider,) = yaml.safe_load(
        (promkit.PROVISIONING / "dashboards" / "driftloop.yml").read_text()
    )["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]


def _alert(name: str) -> str:
    (rule,) = [r for r in promkit.rules() if r.get("alert") == name]
    return rule["expr"]


def _threshold(expr: str) -> float:
    return float(re.fullmatch(r".*>\s*([0-9.]+)", expr.strip())[1])


def test_alert_thresholds_are_the_monitors_own() -> None:
    assert _threshold(_alert("DriftloopHighErrorRate")) == HealthConfig().max_error_rate
    rejected = _threshold(_alert("DriftloopManyRejectedRequests"))
    assert rejected == QualityConfig().max_rejected_share
    # stale after three missed runs of the deployed schedule
    deployments = yaml.safe_load((promkit.REPO / "prefect.yaml").read_text())["deployments"]
    (monitor,) = [d for d in deployments if d["name"] == "monitor"]
    interval = monitor["schedules"][0]["interval"]
    assert _alert("DriftloopMonitorStale").endswith(f"> 3 * {interval // 60} * 60")


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('up{job="x"} == 0', 'up{job="x"} == bool 0'),
        ("a >= b", "a >= bool b"),
        ("time() - x > 3 * 60", "time() - x > bool 3 * 60"),
        ('(sum(a{l=~"4.."}) > 1) < 2', '(sum(a{l=~"4.."}) > 1) < bool 2'),
    ],
)
def test_as_bool_turns_the_outermost_comparison(expr: str, expected: str) -> None:
    assert as_bool(expr) == expected


def test_as_bool_refuses_an_expression_without_comparison() -> None:
    with pytest.raises(AssertionError):
        as_bool("rate(x[1m])")
