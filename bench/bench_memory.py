"""Peak resident memory of each stage, measured from outside the process, next to its time.

* ingest: ``driftloop ingest`` (the CLI a user runs) on a generated 1M-row, 20-column CSV,
  with a schema module written by ``driftloop schema infer`` (the harness writes one if infer
  fails, and says so). The CLI reports to a separately started Prefect server, as in a real
  deployment, so the measured process tree is the ingest and nothing else. Target ≤ 1.5 GiB.
* monitor: one monitor run on a 1M-row prediction-log window, through
  ``bench.bench_profiling.measure_monitor_memory`` (the monitoring engineer's measurement).
  Target ≤ 1 GiB.
* serving: at rest ≤ 400 MiB per worker, and flat (≤ 1 MiB/min after a 3-minute warm-up) over
  a 10-minute soak at steady load: the serving benchmark's server and load
  (``bench.bench_serving``: ``prepare``, ``start_bentoml``, ``soak``), with the worker's RSS
  sampled here every few seconds for a least-squares growth rate after the warm-up.

Each piece that does not exist yet is reported as "not available yet", never as met.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

from bench import harness
from bench.harness import MiB, metric, not_available, quick_skip

AREA = "memory"
INGEST_ROWS = 1_000_000
QUICK_ROWS = 2_000
COLS = 20
SEED = 3
INGEST_TARGET = "≤ 1536 MiB"  # 1.5 GiB
MONITOR_TARGET = "≤ 1024 MiB"  # 1 GiB
SERVING_REST_TARGET = "≤ 400 MiB"
SERVING_SLOPE_TARGET = "≤ 1 MiB/min"
SOAK_S, WARMUP_S, SOAK_SAMPLE_S = 600.0, 180.0, 5.0
TIMEOUT_S = 1800.0


def _cli() -> str:
    """The ``driftloop`` console script of this environment."""
    script = Path(sys.executable).parent / "driftloop"
    return str(script) if script.exists() else "driftloop"


def _harness_module(directory: Path, name: str) -> Path:
    module = directory / f"{name}_harness.py"
    module.write_text(harness.synthetic_schema_source(COLS, f"{name}_harness"))
    return module


def _last_line(proc: harness.ProcessRun) -> str:
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return lines[-1][:200] if lines else "no output"


def _infer_schema(csv: Path, name: str) -> tuple[Path | None, str, harness.ProcessRun]:
    """``driftloop schema infer`` on ``csv``, measured; the module path (None if it failed)."""
    cmd = [_cli(), "schema", "infer", csv, "--target", harness.SYNTH_TARGET, "--id", "row_id"]
    cmd += ["--name", name, "--out-dir", csv.parent, "--force", "--json"]
    proc = harness.run_measured(cmd, timeout=TIMEOUT_S)
    if proc.returncode == 0:
        try:
            return Path(json.loads(proc.stdout.strip().splitlines()[-1])["module"]), "", proc
        except (ValueError, KeyError, IndexError):
            return None, "schema infer printed no module path", proc
    return None, f"schema infer failed: {_last_line(proc)}", proc


def _ingest(csv: Path, module: Path, api_url: str) -> harness.ProcessRun:
    cmd = [_cli(), "ingest", csv, "--dataset", module, "--json"]
    return harness.run_measured(cmd, {"PREFECT_API_URL": api_url}, timeout=TIMEOUT_S)


def _ok(proc: harness.ProcessRun) -> bool:
    return proc.returncode in (0, 3) and not proc.timed_out  # 3 = quality gate failed, data kept


def _ingest_rows(rows: int, api_url: str) -> list[dict[str, Any]]:
    scratch = harness.scratch_dir()
    name = f"memory_{rows}"
    csv = scratch / f"{name}.csv"
    harness.synthetic_table(rows, COLS, SEED).write_csv(csv)
    size_mib = csv.stat().st_size / MiB
    module, problem, infer = _infer_schema(csv, name)
    out = [
        metric(AREA, f"schema infer peak RSS, {rows:,}-row CSV", infer.peak_rss / MiB, "MiB",
               note=f"`driftloop schema infer` in {infer.wall_s:.1f} s")
        if infer.returncode == 0 else
        not_available(AREA, f"schema infer peak RSS, {rows:,}-row CSV", "MiB", problem,
                      prefix="not measured")
    ]  # fmt: skip
    proc = _ingest(csv, module, api_url) if module else None
    if proc is not None and not _ok(proc):
        problem = f"ingest rejected the inferred module ({_last_line(proc)})"
        proc = None
    if proc is None:  # measure the ingest all the same, with the harness's own contract
        problem += "; measured with the harness's schema module instead"
        proc = _ingest(csv, _harness_module(scratch, name), api_url)
    label = f"ingest peak RSS, {rows:,} rows x {COLS} cols (driftloop ingest)"
    if not _ok(proc):
        why = f"failed (exit {proc.returncode}): {_last_line(proc)}"
        return out + [not_available(AREA, label, "MiB", why, target=INGEST_TARGET,
                                    prefix="not measured")]  # fmt: skip
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result.get("rows_in") != rows:
        raise RuntimeError(f"ingest read {result.get('rows_in')} rows, expected {rows}")
    notes = [
        f"whole process tree; largest single process {proc.kernel_maxrss / MiB:,.0f} MiB",
        f"CSV {size_mib:,.0f} MiB",
        f"{result['rows_accepted']:,} accepted",
    ]
    notes += ["quality gate failed (exit 3)"] if proc.returncode == 3 else []
    notes += [problem] if problem else []
    return out + [
        metric(AREA, label, proc.peak_rss / MiB, "MiB", target=INGEST_TARGET,
               note="; ".join(notes)),
        metric(AREA, f"ingest wall time, {rows:,} rows (driftloop ingest)", proc.wall_s, "s",
               note=f"{rows / proc.wall_s:,.0f} rows/s including CLI start-up and the flow run"),
    ]  # fmt: skip


def _monitor_rows() -> list[dict[str, Any]]:
    label = "monitor run peak RSS, 1,000,000-row window"
    try:
        profiling = importlib.import_module("bench.bench_profiling")
        measure = profiling.measure_monitor_memory
    except (ImportError, AttributeError) as exc:
        why = f"bench.bench_profiling.measure_monitor_memory ({type(exc).__name__})"
        return [not_available(AREA, label, "MiB", why, target=MONITOR_TARGET)]
    try:
        row = dict(measure(1_000_000))
    except Exception as exc:  # noqa: BLE001 - reported, never hidden
        why = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        return [not_available(AREA, label, "MiB", why, target=MONITOR_TARGET,
                              prefix="not measured")]  # fmt: skip
    row["area"] = AREA
    row["note"] = (row.get("note") or "") + " (via bench.bench_profiling.measure_monitor_memory)"
    return [row]


_SOAK_NAMES = (
    ("serving worker RSS at rest", "MiB", SERVING_REST_TARGET),
    ("serving worker RSS growth after a 3-min warm-up (10-min soak)", "MiB/min",
     SERVING_SLOPE_TARGET),
)  # fmt: skip


def _slope_per_min(timeline: list[tuple[float, float]], warmup_s: float) -> tuple[float, int]:
    """Least-squares slope (MiB/min) of the samples taken after ``warmup_s``, and their count."""
    import numpy as np

    points = [(t, mib) for t, mib in timeline if t >= warmup_s and mib == mib]
    if len(points) < 3:
        raise ValueError(f"only {len(points)} RSS samples after the warm-up")
    t, mib = np.array(points).T
    return float(np.polyfit(t / 60.0, mib, 1)[0]), len(points)


def _soak_rows(quick: bool) -> list[dict[str, Any]]:
    """The serving engineer's BentoML server and steady load (``bench.bench_serving``:
    ``prepare``, ``start_bentoml``, ``soak``), with this module sampling the worker's RSS
    every few seconds from outside for the growth rate after the warm-up."""
    try:
        serving = importlib.import_module("bench.bench_serving")
        prepare, start, soak = serving.prepare, serving.start_bentoml, serving.soak
    except (ImportError, AttributeError) as exc:
        why = f"bench.bench_serving.prepare/start_bentoml/soak ({type(exc).__name__}: {exc})"
        return [not_available(AREA, n, u, why[:300], target=t) for n, u, t in _SOAK_NAMES]
    if quick:
        why = "the soak takes over 10 minutes"
        return [quick_skip(AREA, n, u, why, target=t) for n, u, t in _SOAK_NAMES]
    try:
        return _soak(serving, prepare, start, soak)
    except Exception as exc:  # noqa: BLE001 - reported, never hidden
        why = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        return [not_available(AREA, n, u, why, target=t, prefix="not measured")
                for n, u, t in _SOAK_NAMES]  # fmt: skip


def _steady_load(soak: Any, proc: Any, records: list[dict], t0: float) -> dict[str, Any]:
    """``soak`` phases back to back until ``SOAK_S`` seconds of load have passed (one phase
    stops early at the load generator's request cap); RSS at rest from the first phase."""
    import time

    first: dict[str, Any] | None = None
    requests = errors = phases = 0
    peak = 0.0
    while (left := SOAK_S - (time.monotonic() - t0)) > 5:
        result = soak(proc, records, left)
        first = first or result
        requests += int(result["requests"])
        errors += int(result["errors"])
        peak = max(peak, float(result["load_peak_worker_mb"]))
        phases += 1
    if first is None:
        raise RuntimeError("no load phase ran")
    return {**first, "requests": requests, "errors": errors, "phases": phases,
            "load_peak_worker_mb": peak, "seconds": time.monotonic() - t0}  # fmt: skip


def _soak(serving: Any, prepare: Any, start: Any, soak: Any) -> list[dict[str, Any]]:
    import threading
    import time

    setup = prepare(False)
    timeline: list[tuple[float, float]] = []
    try:
        proc = start(setup)
        stop = threading.Event()
        t0 = time.monotonic()

        def sample() -> None:
            while not stop.is_set():
                timeline.append((time.monotonic() - t0, proc.rss_mb()["worker"]))
                stop.wait(SOAK_SAMPLE_S)

        sampler = threading.Thread(target=sample, daemon=True)
        try:
            sampler.start()
            result = _steady_load(soak, proc, setup.records, t0)
        finally:
            stop.set()
            sampler.join(timeout=10)
            proc.stop()
    finally:
        serving.cleanup_home(setup.home)
    slope, n = _slope_per_min(timeline, WARMUP_S)
    load = (
        f"{result['requests']:,} requests from 4 clients over {result['seconds']:.0f} s in "
        f"{result['phases']} back-to-back load phase(s), {result['errors']} errors"
    )
    rest_name, rest_unit, rest_target = _SOAK_NAMES[0]
    slope_name, slope_unit, slope_target = _SOAK_NAMES[1]
    return [
        metric(AREA, rest_name, result["rest_worker_mb"], rest_unit, target=rest_target,
               note=f"1 worker of `driftloop serve` (Telco model, {setup.trees} trees); "
                    f"whole bentoml tree {result['rest_tree_mb']:,.0f} MiB"),
        metric(AREA, slope_name, slope, slope_unit, target=slope_target,
               note=f"least-squares slope of {n} worker RSS samples after {WARMUP_S:.0f} s; "
                    f"peak under load {result['load_peak_worker_mb']:,.0f} MiB; {load}"),
    ]  # fmt: skip


def run(quick: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if quick:
        scratch = harness.scratch_dir()
        csv = scratch / "memory_quick.csv"
        harness.synthetic_table(QUICK_ROWS, COLS, SEED).write_csv(csv)
        module, problem, infer = _infer_schema(csv, "memory_quick")
        if module is not None:
            rows.append(metric(AREA, f"schema infer peak RSS, {QUICK_ROWS:,}-row CSV",
                               infer.peak_rss / MiB, "MiB",
                               note=f"harness check: measured from outside in "
                                    f"{infer.wall_s:.1f} s"))  # fmt: skip
        else:
            rows.append(not_available(AREA, "schema infer peak RSS", "MiB", problem,
                                      prefix="not measured"))  # fmt: skip
        rows.append(quick_skip(AREA, f"ingest peak RSS, {INGEST_ROWS:,} rows x {COLS} cols "
                               "(driftloop ingest)", "MiB", target=INGEST_TARGET))  # fmt: skip
        rows.append(quick_skip(AREA, "monitor run peak RSS, 1,000,000-row window", "MiB",
                               target=MONITOR_TARGET))  # fmt: skip
        return rows + _soak_rows(quick)
    with harness.temporary_prefect_server() as api_url:
        rows += _ingest_rows(INGEST_ROWS, api_url)
    rows += _monitor_rows()
    rows += _soak_rows(quick)
    return rows


if __name__ == "__main__":
    harness.main(AREA, run)
