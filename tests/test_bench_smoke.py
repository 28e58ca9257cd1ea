"""`make bench-smoke` works: the benchmark harness runs every area in quick mode and writes its
results. No speed is asserted (a shared box is no place for that); a crashed area is a failure,
an area that outran the smoke budget is reported but tolerated (that is a speed outcome)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from bench.harness import REQUIRED_KEYS
from bench.run import EXPECTED_AREAS, MD_NAME, discover

pytestmark = pytest.mark.slow  # minutes long: xdist workers start it first (tests/conftest.py)

REPO = Path(__file__).resolve().parents[1]
SMOKE_TIMEOUT_S = 150  # the runner stops itself at its 45 s budget; this only catches a hang
# (start-up and clean-up of the areas under a parallel suite's load took it to 48 s)


def test_bench_smoke_runs_every_area(tmp_path: Path) -> None:
    real_md = REPO / MD_NAME
    before = real_md.stat().st_mtime_ns if real_md.exists() else None
    out = tmp_path / "smoke"
    started = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--out-dir", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    doc = json.loads((out / "results.json").read_text())
    assert doc["quick"] is True
    assert (out / MD_NAME).read_text().startswith("# driftloop benchmarks")
    assert doc["machine"]["cores_logical"] >= 1 and doc["machine"]["libraries"]["polars"]
    assert set(doc["areas"]) >= set(EXPECTED_AREAS) | set(discover())

    slow = []
    for area, result in doc["areas"].items():
        assert result["rows"], f"{area} produced no rows"
        for row in result["rows"]:
            missing = [k for k in REQUIRED_KEYS if k not in row]
            assert not missing, f"{area} row {row.get('name')!r} lacks {missing}"
            assert row["area"] == area
            if row["met"] is not None:  # a verdict needs a measured value
                assert row["value"] is not None, (area, row)
        if result["status"] == "timed out":
            slow.append(area)
        elif result["status"] != "missing":
            assert result["status"] == "ok", f"{area}: {result['status']}: {result['error']}"
    ran = [a for a, r in doc["areas"].items() if r["status"] == "ok"]
    assert ran, "no area ran"
    if slow:
        warnings.warn(f"bench areas over the smoke budget: {', '.join(slow)}", stacklevel=1)
    # quick mode never touches the real BENCHMARKS.md
    after = real_md.stat().st_mtime_ns if real_md.exists() else None
    assert after == before
    assert time.time() - started < SMOKE_TIMEOUT_S
