"""Profiling and monitoring benchmark.

* whylogs profiling rows/s on N x 20 (mixed float/int/categorical columns), our fast path
  (``tasks.profiling``: vectorised inf check) vs stock whylogs 1.6.4, side by side in one run.
* monitor-flow wall time on a 100k-row prediction-log window (the real ``@flow`` on a real,
  temporary Prefect server; quick mode times the flow's function without the engine).
* drift report time on 100k reference + 100k current rows (whylogs profiles of both, drift
  statistics, HTML with its pictures: drifted features' distributions and the score's) vs
  Evidently's ``DataDriftPreset`` on the same data. Evidently 0.7.23 does
  not import with pandas 3 (our stack), so it runs in its own venv under /tmp with pandas < 3.
* :func:`measure_monitor_memory`: peak RSS of a monitor run on a 1M-row window, measured from
  outside a subprocess (the memory area of the system benchmark can call it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.harness import (
    MiB,
    Stats,
    compare,
    metric,
    not_available,
    quick_skip,
    ratio,
    run_measured,
    scratch_dir,
    synthetic_schema_source,
    synthetic_table,
)

AREA = "profiling"
UNTIL = datetime(2026, 6, 1, 12, tzinfo=UTC)
EVIDENTLY_VENV = Path(tempfile.gettempdir()) / "driftloop-evidently-venv"
EVIDENTLY_PIN = "evidently==0.7.23"


class NullEmitter:
    """Drops events (the benchmark measures the monitor, not Prefect's events API)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("emit_"):
            return lambda model_name, evidence: None
        raise AttributeError(name)


def _drop_events() -> None:
    """Make the monitor emit through :class:`NullEmitter` (its default emitter, replaced)."""
    from tasks.monitoring import decision

    decision.default_emitter = NullEmitter


# --- data -----------------------------------------------------------------------------------


def _features(frame):
    return frame.drop("row_id", "target")


def _shifted(frame):
    """The same table with two numeric columns moved by one standard deviation."""
    import polars as pl

    return frame.with_columns(pl.col("num_0") + 1.0, pl.col("num_2") * 1.5 + 1.0)


def prepare_monitored_home(rows: int, *, train_rows: int = 20_000, files: int = 10) -> str:
    """Under the current DRIFTLOOP_HOME: a champion on a synthetic 20-column dataset, its
    reference profile, and a drifted prediction log of ``rows`` rows in the hour to UNTIL.
    Returns the dataset module path (``MonitorConfig.dataset``)."""
    import lightgbm as lgb
    import numpy as np
    import polars as pl

    from schemas import load_dataset
    from schemas.records import TS
    from tasks import registry
    from tasks.features import FeatureSpec, build_features, to_matrix
    from tasks.profiling import save_reference_profile
    from tasks.settings import get_settings

    settings = get_settings().ensure_dirs()
    module = scratch_dir() / "synthetic.py"
    module.write_text(synthetic_schema_source(20, "synthetic"))
    ds = load_dataset(str(module))
    fspec = FeatureSpec.from_dataset(ds)
    train = synthetic_table(train_rows, 20, seed=0)
    X = to_matrix(build_features(train, fspec))
    y = (train["target"] == "Yes").to_numpy().astype(float)
    params = {"objective": "binary", "num_threads": 1, "verbose": -1, "seed": 0}
    booster = lgb.train(params, lgb.Dataset(X, y, feature_name=list(fspec.columns)), 20)
    gains = booster.feature_importance("gain")
    importance = dict(zip(fspec.columns, map(float, gains), strict=True))
    meta = {"metrics": {"roc_auc": 0.7}, "threshold": 0.5, "feature_importance": importance}
    tag = registry.save_model(booster, name=ds.name, features=fspec, metadata=meta)
    registry.set_alias(ds.name, "champion", tag, reason="benchmark")
    save_reference_profile(train, booster.predict(X, num_threads=1), tag, ds)
    window = _shifted(synthetic_table(rows, 20, seed=1)).drop("target")
    scores = booster.predict(to_matrix(build_features(window, fspec)), num_threads=1)
    rng = np.random.default_rng(2)
    offsets = np.sort(rng.uniform(1, 3_599, rows))[::-1]
    head = pl.DataFrame(
        {
            "request_id": pl.Series([f"req-{i}" for i in range(rows)], dtype=pl.String),
            "entity_id": window["row_id"].cast(pl.String),
            "ts": pl.Series([UNTIL - timedelta(seconds=float(s)) for s in offsets], dtype=TS),
            "model_tag": [tag] * rows,
            "score": scores,
            "decision": scores >= 0.5,
            "shadow_tag": pl.Series([None] * rows, dtype=pl.String),
            "shadow_score": pl.Series([None] * rows, dtype=pl.Float64),
            "latency_ms": rng.gamma(2.0, 3.0, rows),
        }
    )
    log = pl.concat([head, window.with_columns(pl.col("row_id"))], how="horizontal")
    step = -(-rows // files)
    for i in range(files):
        log.slice(i * step, step).write_parquet(settings.predictions_dir / f"batch-{i:04d}.parquet")
    return str(module)


def _monitor_config(dataset: str):
    from flows.monitor import MonitorConfig

    return MonitorConfig(dataset=dataset, window_minutes=60, until=UNTIL)


# --- measurements ---------------------------------------------------------------------------


def _float_table(rows: int):
    """20 float columns (1% NaN, a few infinities): the case whylogs' per-element check hits."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(0)
    cols = {}
    for i in range(20):
        x = rng.normal(loc=i, size=rows)
        x[rng.random(rows) < 0.01] = np.nan
        x[rng.random(rows) < 0.0001] = np.inf
        cols[f"f_{i}"] = x
    return pl.DataFrame(cols)


def bench_profiling_speed(rows: int, n: int, kind: str) -> list[dict[str, Any]]:
    from tasks import profiling

    if kind == "float":
        frame, what = _float_table(rows), "20 float columns"
    else:
        frame = _features(synthetic_table(rows, 20, seed=0))
        what = "20 mixed columns: 8 float, 4 int, 8 categorical"
    profiling._whylogs()

    def ours():
        profiling.use_stock_whylogs(False)
        profiling.profile_frame(frame)

    def stock():
        profiling.use_stock_whylogs(True)
        try:
            profiling.profile_frame(frame)
        finally:
            profiling.use_stock_whylogs(False)

    timed = compare({"ours": ours, "stock": stock}, n=n, warmup=0)
    return [
        metric(AREA, f"whylogs profiling, ours (vectorised inf check), {rows:,} x 20 {kind}",
               None, "rows/s", target="≥ 300000 rows/s",
               stats=timed["ours"].map(lambda s: rows / s), note=what),
        metric(AREA, f"whylogs profiling, stock 1.6.4, {rows:,} x 20 {kind}", None, "rows/s",
               stats=timed["stock"].map(lambda s: rows / s),
               note=f"{what}; same frame, same run, round-robin"),
        metric(AREA, f"whylogs profiling speed-up ({kind}), ours ÷ stock", None, "x",
               stats=ratio(timed["stock"], timed["ours"]), note="per-round ratio"),
    ]  # fmt: skip


def bench_monitor_flow(rows: int, n: int, quick: bool) -> list[dict[str, Any]]:
    from flows.monitor import monitor, run_monitor

    dataset = prepare_monitored_home(rows)
    config = _monitor_config(dataset)
    _drop_events()
    if quick:
        times = [_timed(lambda: run_monitor(config)) for _ in range(n)]
        report = run_monitor(config)
        assert report["window"]["rows"] == rows, report["window"]
        return [
            metric(AREA, f"monitor run (flow function, no Prefect engine), {rows:,}-row window",
                   None, "s", stats=Stats.of(times), note="quick mode: without the engine; "
                   f"drifted: {', '.join(report['drift']['drifted_features'])}")
        ]  # fmt: skip
    from bench.harness import temporary_prefect_server

    with temporary_prefect_server():
        times = [_timed(lambda: monitor(config=config)) for _ in range(n)]
    report = run_monitor(config)
    assert report["window"]["rows"] == rows, report["window"]
    return [
        metric(AREA, f"monitor flow wall time, {rows:,}-row window", None, "s",
               target="≤ 10 s", stats=Stats.of(times),
               note=f"real @flow on a temporary Prefect server; drifted: "
                    f"{', '.join(report['drift']['drifted_features'])}")
    ]  # fmt: skip


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def our_drift_report(reference, current, out: Path) -> dict[str, Any]:
    """Whylogs profiles of both sides (features and model score), drift statistics on the
    features, JSON + HTML with pictures: the monitor's report (drifted features' and the
    score's distributions, recent windows as drawn after a day of 15-minute runs)."""
    from tasks.drift import DriftConfig, compute_drift
    from tasks.monitoring.html import render_report_html
    from tasks.profiling import SCORE_COLUMN, profile_frame, summarize_profile

    features = [c for c in reference.columns if c != SCORE_COLUMN]
    num = [c for c in features if not c.startswith("cat_")]
    cat = [c for c in features if c.startswith("cat_")]
    profiles = {"reference": summarize_profile(profile_frame(reference)),
                "current": summarize_profile(profile_frame(current))}  # fmt: skip
    drift = compute_drift(reference, current, numeric=num, categorical=cat, importance=None,
                          config=DriftConfig())  # fmt: skip
    report = {"model_name": "synthetic", "drift": drift.to_dict(), "profiles": profiles,
              "decision": {"action": "-", "reason": "benchmark"}}  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps(report, default=str))
    page = render_report_html(report, _history())
    # the pictures are there: each drifted feature, the score, the two history charts
    assert page.count("<svg") == len(drift.drifted_features) + 3, page.count("<svg")
    out.with_suffix(".html").write_text(page)
    return report


def _scored(frame):
    """The features with a model-like score (a fixed logistic of two features), as the
    monitor's window carries the champion's scores beside its inputs."""
    import polars as pl

    from tasks.profiling import SCORE_COLUMN

    logit = 0.6 * pl.col("num_0").fill_null(0.0) - 0.3 * pl.col("num_2").fill_null(2.0)
    return frame.with_columns((1 / (1 + (-logit).exp())).alias(SCORE_COLUMN))


def _history():
    from tasks.monitoring.html import WindowPoint

    return [WindowPoint(f"w{i}", 0.1 + i / 200, 0.3, 0.8, 0.79, 0.84) for i in range(96)]


def bench_drift_report(rows: int, n: int, quick: bool) -> list[dict[str, Any]]:
    """Ours and Evidently's report on the same data, alternating round by round (Evidently in a
    worker process of its own venv that has read the data once and times each report itself),
    so both sides of each round share the machine's load; the ratio is per round."""
    ref = _features(synthetic_table(rows, 20, seed=0))
    cur = _features(_shifted(synthetic_table(rows, 20, seed=1)))
    scored_ref, scored_cur = _scored(ref), _scored(cur)  # ours also profiles and draws a score
    out = scratch_dir() / "drift_report"
    report = our_drift_report(scored_ref, scored_cur, out)  # warm-up: imports, first profile

    def ours_once() -> float:
        return _timed(lambda: our_drift_report(scored_ref, scored_cur, out))

    ours_name = (f"drift report, ours (whylogs + stats + HTML with pictures), {rows:,} + "
                 f"{rows:,} rows")  # fmt: skip
    note = (f"20 features + the score profiled, drift on the features; drifted: "
            f"{', '.join(report['drift']['drifted_features'])}")  # fmt: skip
    name = f"drift report, Evidently DataDriftPreset, {rows:,} + {rows:,} rows"
    speedup = f"drift report speed-up, Evidently ÷ ours, {rows:,} + {rows:,} rows"
    if quick:
        times = Stats.of([ours_once() for _ in range(n)])
        return [metric(AREA, ours_name, None, "s", stats=times, note=note),
                quick_skip(AREA, name, "s"),
                quick_skip(AREA, speedup, "x", target="≥ 5 x")]  # fmt: skip
    ref.write_parquet(scratch_dir() / "ref.parquet")
    cur.write_parquet(scratch_dir() / "cur.parquet")
    worker = _evidently_worker()
    if isinstance(worker, dict):  # not available: ours alone
        times = Stats.of([ours_once() for _ in range(n)])
        return [metric(AREA, ours_name, None, "s", stats=times, note=note), worker,
                not_available(AREA, speedup, "x", "no Evidently run", target="≥ 5 x")]  # fmt: skip
    ours, theirs = [], []
    try:
        worker.report()  # warm-up, as ours had
        for i in range(n):  # alternate which side goes first
            for side in ("ours", "theirs") if i % 2 == 0 else ("theirs", "ours"):
                if side == "ours":
                    ours.append(ours_once())
                else:
                    theirs.append(worker.report())
    finally:
        worker.close()
    ours_s, theirs_s = Stats.of(ours), Stats.of(theirs)
    return [
        metric(AREA, ours_name, None, "s", stats=ours_s, note=note),
        metric(AREA, name, None, "s", stats=theirs_s,
               note=f"evidently {worker.version} in its own venv (pandas < 3), same Parquet data, "
                    f"with HTML; rounds alternate with ours"),
        metric(AREA, speedup, None, "x", target="≥ 5 x", stats=ratio(theirs_s, ours_s),
               note="per-round ratio of the two rows above (same rounds, same load)"),
    ]  # fmt: skip


_EVIDENTLY_SCRIPT = """
import json, sys, time
import pandas as pd
import evidently
from evidently import Report
from evidently.presets import DataDriftPreset
ref = pd.read_parquet(sys.argv[1]); cur = pd.read_parquet(sys.argv[2])
print(json.dumps({"version": evidently.__version__}), flush=True)
for _ in sys.stdin:  # one report per line asked for; its time on stdout
    t0 = time.perf_counter()
    snap = Report([DataDriftPreset()]).run(reference_data=ref, current_data=cur)
    snap.save_html(sys.argv[3])
    print(json.dumps(time.perf_counter() - t0), flush=True)
"""


class _EvidentlyWorker:
    """The peer's process: reads the data once, then makes one timed report per request."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)  # fmt: skip
        self.version = json.loads(self._line())["version"]

    def _line(self) -> str:
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"Evidently failed: {' '.join(err.strip().splitlines()[-1:])}")
        return line

    def report(self) -> float:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return float(json.loads(self._line()))

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _make_evidently_venv(python: Path) -> str | None:
    """Build the peer's own venv with uv (a minute, once per machine); None if it worked."""
    import shutil

    uv = [found] if (found := shutil.which("uv")) else ["python3", "-m", "uv"]
    steps = [
        [*uv, "venv", "--quiet", str(EVIDENTLY_VENV), "--python", "3.11"],
        [*uv, "pip", "install", "--quiet", "--python", str(python), EVIDENTLY_PIN, "pandas<3",
         "pyarrow"],
    ]  # fmt: skip
    for cmd in steps:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{cmd[len(uv)]} failed: {exc}"
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
            return f"`uv {cmd[len(uv)]}` failed: {' '.join(tail)}"
    return None


def _evidently_worker() -> _EvidentlyWorker | dict[str, Any]:
    """Evidently's worker in its own venv (pandas < 3); an honest 'not available' row if it
    cannot run."""
    name = "drift report, Evidently DataDriftPreset"
    python = EVIDENTLY_VENV / "bin" / "python"
    if not python.exists():
        failed = _make_evidently_venv(python)
        if failed:
            why = (f"no venv at {EVIDENTLY_VENV} ({failed}): create it with `uv venv "
                   f"{EVIDENTLY_VENV} --python 3.11 && uv pip install --python {python} "
                   f"'{EVIDENTLY_PIN}' 'pandas<3' pyarrow` (Evidently 0.7.23 fails to import "
                   f"with pandas 3)")  # fmt: skip
            return not_available(AREA, name, "s", why)
    script = scratch_dir() / "evidently_bench.py"
    script.write_text(_EVIDENTLY_SCRIPT)
    data = scratch_dir()
    args = [str(python), str(script), str(data / "ref.parquet"), str(data / "cur.parquet"),
            str(data / "evidently.html")]  # fmt: skip
    try:
        return _EvidentlyWorker(args)
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        return not_available(AREA, name, "s", str(exc))


def measure_monitor_memory(rows: int = 1_000_000, timeout_s: float = 1_200) -> dict[str, Any]:
    """Peak RSS of one monitor run on a ``rows``-row window, measured from outside.

    A first subprocess builds the home (champion, reference, prediction log); a second one
    runs the monitor flow's function on it; only the second is measured. Safe to call from
    any process: it uses its own temporary DRIFTLOOP_HOME.
    """
    from bench.harness import bench_env, make_temp_base, remove_temp

    base = make_temp_base()
    try:
        env = bench_env(base)
        me = [sys.executable, "-m", "bench.bench_profiling"]
        prep = run_measured([*me, "--prepare", str(rows)], env, timeout=timeout_s).check()
        dataset = prep.stdout.strip().splitlines()[-1]
        run = run_measured([*me, "--monitor-child", dataset], env, timeout=timeout_s).check()
        out = json.loads(run.stdout.strip().splitlines()[-1])
    finally:
        remove_temp(base)
    return metric(AREA, f"monitor run peak memory, {rows:,}-row window", run.peak_rss / MiB,
                  "MiB", target="≤ 1024 MiB",
                  note=f"peak RSS of the monitor process from outside; {out['rows']:,} rows "
                       f"in {run.wall_s:.1f} s; drifted: {', '.join(out['drifted'])}")  # fmt: skip


def run(quick: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for kind in ("float", "mixed"):
        rows += bench_profiling_speed(5_000 if quick else 1_000_000, 1 if quick else 3, kind)
    rows += bench_monitor_flow(5_000 if quick else 100_000, n=1 if quick else 3, quick=quick)
    rows += bench_drift_report(5_000 if quick else 100_000, n=1 if quick else 3, quick=quick)
    if quick:
        rows.append(quick_skip(AREA, "monitor run peak memory, 1,000,000-row window", "MiB",
                               target="≤ 1024 MiB"))  # fmt: skip
    else:
        rows.append(measure_monitor_memory(1_000_000))
    return rows


def _child(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prepare", type=int)
    parser.add_argument("--monitor-child")
    args = parser.parse_args(argv)
    if args.prepare:
        print(prepare_monitored_home(args.prepare))
        return
    from flows.monitor import run_monitor

    _drop_events()
    report = run_monitor(_monitor_config(args.monitor_child))
    print(json.dumps({"rows": report["window"]["rows"],
                      "drifted": report["drift"]["drifted_features"]}))  # fmt: skip


if __name__ == "__main__":
    if {"--prepare", "--monitor-child"} & set(sys.argv):
        os.environ.setdefault("WHYLOGS_NO_ANALYTICS", "True")
        _child(sys.argv[1:])
    else:
        from bench.harness import main

        main(AREA, run)
