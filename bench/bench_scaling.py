"""Scaling curves: ingest, training and profiling time (and peak memory) against data size.

Each point runs in its own subprocess, so its peak RSS is measured from outside and one
size's memory never leaks into the next: ``ingest`` is ``tasks.ingest.compose.ingest_file`` on a
generated CSV (read, parse, validate, quarantine, snapshot, quality report); ``training`` is
``tasks.training`` split + features + the untuned baseline fit (LightGBM defaults, 100 rounds,
1 thread: a fixed budget, so time reflects data size); ``profiling`` is
``tasks.profiling.profile_frame`` (our whylogs path). Training and profiling read the
snapshot that ingest wrote. Sizes: 10k, 100k, 1M rows, and 10M when enough memory is free
(full run only) for each stage whose peak memory, extrapolated from 1M rows, fits in 60% of
the free memory (training and profiling then read a generated Parquet file if ingest had to
skip). Plots go to ``bench/results/scaling_*.png``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench import harness
from bench.harness import metric, not_available

AREA = "scaling"
COLS = 20
SEED = 11
SIZES = (10_000, 100_000, 1_000_000)
BIG = 10_000_000
MEMORY_SHARE = 0.6  # a 10M-row point runs only if its predicted peak fits in this share
QUICK_SIZES = (2_000,)
POINT_TIMEOUT_S = 2400.0
STAGES = ("ingest", "training", "profiling")
# what each stage calls: module, function names that must exist
NEEDS = {
    "ingest": ("tasks.ingest.compose", ("ingest_file",)),
    "training": ("tasks.training.fit", ("FitData", "fit_default")),
    "profiling": ("tasks.profiling", ("profile_frame",)),
}


def _repeats(rows: int, quick: bool) -> int:
    return 1 if quick or rows >= 1_000_000 else 3


def _missing(stage: str) -> str | None:
    """Why ``stage`` cannot be measured (None when its functions exist)."""
    module_name, names = NEEDS[stage]
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure means "not available"
        return f"{module_name} does not import ({type(exc).__name__}: {exc})"
    absent = [n for n in names if not hasattr(module, n)]
    return f"{module_name} lacks {', '.join(absent)}" if absent else None


# --- one point, inside its own process ------------------------------------------------------
def _point(stage: str, csv: Path, module: Path, snapshot: str | None, repeat: int) -> dict:
    from schemas import load_dataset

    dataset = load_dataset(str(module))
    if stage == "ingest":
        from tasks.ingest.compose import ingest_file

        samples, result = [], None
        for _ in range(repeat):
            t0 = time.perf_counter()
            result = ingest_file(csv, dataset)
            samples.append(time.perf_counter() - t0)
        assert result is not None
        return {"samples": samples, "snapshot": str(result.snapshot), "rows": result.rows_in}
    from tasks.ingest.snapshot import load_snapshot

    frame = load_snapshot(snapshot)
    if stage == "training":
        from tasks.features import FeatureSpec
        from tasks.training import fit, split

        features = FeatureSpec.from_dataset(dataset)

        def work() -> Any:
            splits = split.split_data(frame, dataset, seed=SEED)
            tr, va = (split.to_xy(s, dataset, features) for s in (splits.train, splits.valid))
            return fit.fit_default(fit.FitData(tr, va, features, "binary", SEED, num_threads=1))

    else:
        from tasks.profiling import profile_frame

        def work() -> Any:
            return profile_frame(frame)

    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        work()
        samples.append(time.perf_counter() - t0)
    return {"samples": samples, "rows": frame.height}


def _child_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--point", choices=STAGES, required=True)
    parser.add_argument("--csv", type=Path, required=True)
    parser.add_argument("--module", type=Path, required=True)
    parser.add_argument("--snapshot")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    out = _point(args.point, args.csv, args.module, args.snapshot, args.repeat)
    print("BENCH-POINT " + json.dumps(out))
    return 0


# --- the parent -----------------------------------------------------------------------------
def _run_point(stage: str, csv: Path, module: Path, snapshot: str | None, repeat: int) -> dict:
    cmd = [sys.executable, "-m", "bench.bench_scaling", "--point", stage, "--csv", csv]
    cmd += ["--module", module, "--repeat", str(repeat)]
    cmd += ["--snapshot", snapshot] if snapshot else []
    proc = harness.run_measured(cmd, cwd=harness.REPO, timeout=POINT_TIMEOUT_S)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH-POINT ")), None)
    if proc.returncode != 0 or line is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        why = "timed out" if proc.timed_out else f"exit {proc.returncode}: {tail[0][:200]}"
        return {"error": why}
    out = json.loads(line.removeprefix("BENCH-POINT "))
    out["peak_rss"] = proc.peak_rss
    return out


def _run_point_inline(stage: str, csv: Path, module: Path, snapshot: str | None) -> dict:
    """Quick mode: the same point in this process (no start-up cost, no memory figure)."""
    try:
        return _point(stage, csv, module, snapshot, 1)
    except Exception as exc:  # noqa: BLE001 - reported as a failed point
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}


def _rows_for(stage: str, rows: int, point: dict) -> list[dict[str, Any]]:
    label = f"{stage} time, {rows:,} rows"
    mem_label = f"{stage} peak RSS, {rows:,} rows"
    if "skipped" in point:
        why = f"memory does not allow it: {point['skipped']}"
        return [
            not_available(AREA, label, "s", why, prefix="skipped"),
            not_available(AREA, mem_label, "MiB", why, prefix="skipped"),
        ]
    if "peak_rss" not in point and "error" not in point:
        stats = harness.Stats.of(point["samples"])
        return [
            metric(AREA, label, None, "s", stats=stats, note=f"{rows / stats.median:,.0f} rows/s"),
            harness.quick_skip(AREA, mem_label, "MiB", "points run in-process"),
        ]
    if "error" in point:
        why = f"failed: {point['error']}"
        return [
            not_available(AREA, label, "s", why, prefix="not measured"),
            not_available(AREA, mem_label, "MiB", why, prefix="not measured"),
        ]
    stats = harness.Stats.of(point["samples"])
    speed = rows / stats.median
    return [
        metric(AREA, label, None, "s", stats=stats, note=f"{speed:,.0f} rows/s"),
        metric(AREA, mem_label, point["peak_rss"] / harness.MiB, "MiB",
               note="whole process, measured from outside (includes imports)"),
    ]  # fmt: skip


def _plot(points: dict[str, dict[int, dict]], out_dir: Path) -> list[str]:
    """Time and peak-memory curves (log-log); returns a note when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ["matplotlib is not installed: no plots"]
    for key, ylabel, fname, scale in (
        ("samples", "median time (s)", "scaling_time.png", None),
        ("peak_rss", "peak RSS (MiB)", "scaling_memory.png", harness.MiB),
    ):
        if not any(key in p for by_size in points.values() for p in by_size.values()):
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
        for stage, by_size in points.items():
            xs, ys = [], []
            for rows, point in sorted(by_size.items()):
                if key not in point or "error" in point or "skipped" in point:
                    continue
                value = point[key]
                ys.append(harness.Stats.of(value).median if scale is None else value / scale)
                xs.append(rows)
            if xs:
                ax.plot(xs, ys, marker="o", label=stage)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("rows (20 feature columns)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"driftloop scaling: {ylabel.split(' (')[0]}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out_dir / fname)
        plt.close(fig)
    return []


def _too_big(stage: str, points: dict[str, dict[int, dict]], size: int) -> str | None:
    """Why ``stage`` must skip ``size`` rows: its peak extrapolated linearly from the largest
    measured size (an overestimate: the import baseline is counted too) must fit in
    ``MEMORY_SHARE`` of the memory free now, so the benchmark never pushes the box into OOM."""
    import psutil

    measured = [(n, p) for n, p in points[stage].items() if "peak_rss" in p and n < size]
    if not measured:
        return "no smaller measurement to extrapolate its memory from"
    rows, point = max(measured)
    predicted = point["peak_rss"] * size / rows
    free = psutil.virtual_memory().available
    if predicted <= MEMORY_SHARE * free:
        return None
    gib = harness.GiB
    return (
        f"predicted peak {predicted / gib:.1f} GiB ({size // rows}× the {rows:,}-row peak) "
        f"> {MEMORY_SHARE:.0%} of the {free / gib:.1f} GiB free"
    )


def _measure_size(
    size: int, quick: bool, missing: dict[str, str | None], points: dict[str, dict[int, dict]]
) -> None:
    """All stages at one size (ingest first: training and profiling read its snapshot)."""
    scratch = harness.scratch_dir()
    name = f"scaling_{size}"
    module = scratch / f"{name}.py"
    module.write_text(harness.synthetic_schema_source(COLS, name))
    csv = scratch / f"{name}.csv"
    snapshot = None
    for stage in STAGES:
        if missing[stage]:
            continue
        why = None if quick or size <= SIZES[-1] else _too_big(stage, points, size)
        if why:
            points[stage][size] = {"skipped": why}
            continue
        if stage == "ingest":
            harness.synthetic_table(size, COLS, SEED).write_csv(csv)
            if quick:
                points[stage][size] = _run_point_inline(stage, csv, module, None)
            else:
                points[stage][size] = _run_point(stage, csv, module, None, _repeats(size, quick))
            snapshot = points[stage][size].get("snapshot")
            csv.unlink(missing_ok=True)
            continue
        if snapshot is None:  # ingest skipped or failed: the same typed table, written directly
            path = scratch / f"{name}.parquet"
            harness.synthetic_table(size, COLS, SEED).write_parquet(path)
            snapshot = str(path)
        if quick:
            points[stage][size] = _run_point_inline(stage, csv, module, snapshot)
        else:
            points[stage][size] = _run_point(stage, csv, module, snapshot, _repeats(size, quick))


def run(quick: bool) -> list[dict[str, Any]]:
    sizes = list(QUICK_SIZES if quick else (*SIZES, BIG))
    missing = {stage: _missing(stage) for stage in STAGES}
    points: dict[str, dict[int, dict]] = {stage: {} for stage in STAGES}
    for size in sizes:
        _measure_size(size, quick, missing, points)
    rows_out: list[dict[str, Any]] = []
    for stage in STAGES:
        if missing[stage]:
            rows_out.append(not_available(AREA, f"{stage} time", "s", missing[stage] or ""))
            continue
        for size in sizes:
            rows_out += _rows_for(stage, size, points[stage][size])
    notes = _plot({s: p for s, p in points.items() if p}, harness.results_dir(quick))
    for note in notes:
        rows_out.append(not_available(AREA, "scaling plots", "", note))
    return rows_out


if __name__ == "__main__":
    if "--point" in sys.argv:
        sys.exit(_child_main(sys.argv[1:]))
    harness.main(AREA, run)
