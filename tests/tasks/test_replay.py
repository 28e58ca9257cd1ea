"""The replay benchmark, as a small seeded smoke through the CLI: real monitor code, a
prediction log with delayed labels, per-scenario rates and targets (the full replay runs in
``make bench``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from typer.testing import CliRunner

from driftloop.cli import build_app


def test_replay_cli_smoke(telco_csv: Path, tmp_path: Path) -> None:
    home_before = os.environ.get("DRIFTLOOP_HOME")
    out = tmp_path / "replay.json"
    args = ["replay", "--data", str(telco_csv), "--seeds", "1", "--windows", "3", "--rows",
            "1000", "--scenario", "no_change", "--scenario", "concept_segment", "--out",
            str(out), "--json"]  # fmt: skip
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc == json.loads(out.read_text())
    assert os.environ.get("DRIFTLOOP_HOME") == home_before  # the replay's home was temporary
    by_name = {s["scenario"]: s for s in doc["summaries"]}
    assert set(by_name) == {"no_change", "concept_segment"}
    quiet, concept = by_name["no_change"], by_name["concept_segment"]
    assert quiet["windows"] == concept["windows"] == 3 and quiet["rows_per_window"] == 1000
    assert quiet["retrain_rate"] == 0 and quiet["alert_rate"] == 0
    assert {t["name"] for t in quiet["targets"]} == {"retrain rate", "drift alert rate"}
    # labels flipped in a segment: the realized AUC falls, inputs unchanged
    assert concept["auc_change"] < -0.05 and concept["univariate_rate_drifted"] == 0
    assert 0 <= concept["estimate_coverage"] <= 1 and concept["monitor_seconds"] > 0
