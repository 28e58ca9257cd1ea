"""Scale-out topology: the shared prediction log on PostgreSQL.

* prediction-log write throughput to PostgreSQL: rows/s of one replica's flush (binary COPY
  encoding, :mod:`tasks.postgres.pgcopy`, + one COPY transaction), Telco-shaped rows (9 record
  columns + 20 inputs), in batches of the log's early-flush size; then two replicas flushing at
  once (two processes, one database), per replica. Into a throwaway database on the machine's
  PostgreSQL (``DRIFTLOOP_BENCH_PG``, default ``postgresql://postgres@127.0.0.1:5432/test``),
  dropped after.
* Parquet flush of the same batches, side by side (the embedded default).
* serving p50 with the PostgreSQL log against the Parquet log: two ``driftloop serve``
  processes side by side on one model (``bench.bench_serving``'s setup and load generator),
  batch 1, 8 keep-alive clients, phases alternating between them.
* tuning wall time with 1 and 2 worker processes on one study (PostgreSQL, a throwaway
  database): each process runs what a tune-worker flow run runs
  (``tasks.training.distributed.run_share``: the snapshot's split, the start barrier, trials
  on the shared study until it holds the requested number), Telco, pruning off (each trial a
  full early-stopped fit: pruned Telco trials take ~0.2 s, less than a process start), 1
  LightGBM thread each, equal trials. The ratio is of the study's tuning span, from its first
  trial's start to its last trial's end: a worker's process start and data loading happen
  before the barrier and are the same fixed cost with 1 worker or 2, so they are not tuning
  (both end-to-end process wall times are in the note); beside it the best valid AUC of each
  study. Prefect's own overhead (run pick-up by the workers) is not in it.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl

from bench.harness import Stats, metric, not_available, quick_skip, scratch_dir

AREA = "topology"
ADMIN_URL = os.environ.get("DRIFTLOOP_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
INPUTS = 20


def _database() -> contextlib.AbstractContextManager[str]:
    from tasks.postgres.db import scratch_database

    return scratch_database(ADMIN_URL, "driftloop_bench")


def _batch(rows: int, seed: int) -> pl.DataFrame:
    """One flush's worth of prediction-log rows, Telco-shaped."""
    from tasks.predlog import ScoredBatch, prediction_frame

    rng = np.random.default_rng(seed)
    ids = [f"{seed}-{i}" for i in range(rows)]
    inputs = {f"num_{j}": rng.normal(size=rows) for j in range(INPUTS // 2)}
    choices = np.array(["Month-to-month", "One year", "Two year", "No internet service"])
    inputs |= {f"cat_{j}": choices[rng.integers(0, 4, rows)] for j in range(INPUTS // 2)}
    return prediction_frame(
        ScoredBatch(
            inputs=pl.DataFrame(inputs), request_ids=ids, entity_ids=ids,
            ts=datetime.now(UTC), model_tag="telco:bench", scores=rng.random(rows),
            decisions=rng.random(rows) > 0.5, latency_ms=1.0,
        )
    )  # fmt: skip


def _write_rate(url: str | None, rows: int, batches: int, seed: int) -> float:
    """Rows/s of ``batches`` sink writes (PostgreSQL at ``url``, else Parquet files)."""
    from tasks.buffered_log import ParquetSink
    from tasks.postgres.log import PostgresSink

    frames = [_batch(rows, seed * 1000 + b) for b in range(batches)]
    sink: Any = (
        PostgresSink(url, "predictions")
        if url
        else ParquetSink(scratch_dir() / f"log-{seed}", prefix="predictions")
    )
    sink.open()
    sink.write(frames[0].head(10), "warm")  # connect and add the input columns before timing
    started = time.perf_counter()
    for i, frame in enumerate(frames):
        sink.write(frame, f"bench-{i:06d}")
    elapsed = time.perf_counter() - started
    sink.close()
    return rows * batches / elapsed


def _replica(url: str, rows: int, batches: int, seed: int, out: Any) -> None:
    out.put(_write_rate(url, rows, batches, seed))


def _two_replicas(url: str, rows: int, batches: int) -> list[float]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_replica, args=(url, rows, batches, s, queue)) for s in (7, 8)]
    for p in procs:
        p.start()
    rates = [queue.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    return rates


SERVING_CLIENTS = 8


@contextlib.contextmanager
def _serve(setup: Any, name: str, extra: dict[str, str]) -> Iterator[Any]:
    from bench import bench_serving as bs

    port = bs._free_port()
    env = {**bs._env(setup), **extra}
    cmd = [sys.executable, "-m", "driftloop", "serve", "--port", str(port)]
    proc = bs.Proc(cmd, env, port, setup.home / f"serve-{name}.log")
    try:
        yield proc
    finally:
        proc.stop()


def _serving_rows(quick: bool) -> list[dict[str, Any]]:
    from bench import bench_serving as bs
    from tasks import registry
    from tasks.settings import Settings

    if quick:
        return [quick_skip(AREA, "serving p50, PostgreSQL log vs Parquet log", "ratio")]
    seconds, rounds = 6.0, 3
    setup = bs.prepare(quick)
    try:
        with _database() as url:
            tag = registry.get_alias("telco", registry.CHAMPION, Settings(home=setup.home))
            registry.set_alias("telco", registry.CHAMPION, tag,
                               settings=Settings(home=setup.home, database_url=url))  # fmt: skip
            p50: dict[str, list[float]] = {"parquet": [], "postgresql": []}
            with (
                _serve(setup, "parquet", {}) as files,
                _serve(setup, "postgresql", {"DRIFTLOOP_DATABASE_URL": url}) as pg,
            ):
                procs = {"parquet": files, "postgresql": pg}
                for proc in procs.values():
                    proc.wait_ready("/readyz")
                for r in range(rounds):
                    for name in list(procs) if r % 2 == 0 else list(procs)[::-1]:
                        res = bs.run_load(procs[name].port, "/predict", setup.records, 1,
                                          SERVING_CLIENTS, seconds)  # fmt: skip
                        p50[name].append(res["p50_ms"])
    finally:
        bs.cleanup_home(setup.home)
    files_ms, pg_ms = Stats.of(p50["parquet"]), Stats.of(p50["postgresql"])
    note = f"batch 1, {SERVING_CLIENTS} clients, {rounds} alternating rounds of {seconds:g} s"
    return [
        metric(AREA, "serving p50 with the PostgreSQL log / with the Parquet log",
               pg_ms.median / files_ms.median, "ratio", target="≤ 1.10 ratio",
               note=f"{pg_ms.median:.2f} ms vs {files_ms.median:.2f} ms; {note}"),
        metric(AREA, "serving p50, PostgreSQL log", None, "ms", stats=pg_ms, note=note),
        metric(AREA, "serving p50, Parquet log", None, "ms", stats=files_ms, note=note),
    ]  # fmt: skip


def _tune_share(job: dict[str, Any], worker: int, home: str, url: str, out: Any) -> None:
    from tasks.settings import Settings
    from tasks.training.distributed import TuneJob, run_share

    out.put(run_share(TuneJob(**job), worker, Settings(home=home, optuna_storage=url)).trials_run)


def _tuning_rows(quick: bool) -> list[dict[str, Any]]:
    """Tuning wall time and best AUC, one worker process vs two on one study."""
    import dataclasses

    import optuna

    from flows.train import TrainConfig
    from schemas import load_dataset
    from tasks.ingest.compose import ingest_file
    from tasks.settings import Settings
    from tasks.training.run import resolve_data_path
    from tasks.training.storage import open_storage

    trials, name = 40, "tuning wall time, 2 worker processes vs 1 on one study"
    if quick:
        return [quick_skip(AREA, name, "ratio", target="≥ 1.5 ratio")]
    dataset = load_dataset("telco")
    settings = Settings(home=scratch_dir() / "tune-home").ensure_dirs()
    version = ingest_file(resolve_data_path(None, dataset), dataset, settings=settings).data_version
    ctx = mp.get_context("spawn")
    wall, span, best, shares, fits = {}, {}, {}, {}, {}
    with _database() as url:
        optuna.get_all_study_names(open_storage(url))  # the schema, before the workers connect
        for n in (1, 2):
            config = TrainConfig(trials=trials, tune_workers=2, num_threads=1, pruning=False)
            job = config.tune_options(url, f"bench-{n}", version).distributed
            job = dataclasses.asdict(dataclasses.replace(job, tune_workers=n))
            queue = ctx.Queue()
            started = time.perf_counter()
            procs = [ctx.Process(target=_tune_share, args=(job, i, str(settings.root), url, queue))
                     for i in range(n)]  # fmt: skip
            for p in procs:
                p.start()
            shares[n] = sorted(queue.get(timeout=1800) for _ in procs)
            for p in procs:
                p.join(timeout=60)
            wall[n] = time.perf_counter() - started
            study = optuna.load_study(study_name=f"bench-{n}", storage=open_storage(url))
            best[n] = study.best_value
            span[n] = (max(t.datetime_complete for t in study.trials)
                       - min(t.datetime_start for t in study.trials)).total_seconds()  # fmt: skip
            fits[n] = float(np.mean([t.duration.total_seconds() for t in study.trials]))
    note = (f"{trials} trials (pruning off: each a full fit), Telco, 1 thread per process; "
            f"trials per worker {shares[2]}; mean trial {fits[1]:.2f} s with 1, "
            f"{fits[2]:.2f} s with 2; "
            f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    return [
        metric(AREA, name, span[1] / span[2], "ratio", target="≥ 1.5 ratio",
               note=f"first trial start to last trial end: {span[1]:.1f} s with 1, "
                    f"{span[2]:.1f} s with 2 (processes start to end: {wall[1]:.1f} s and "
                    f"{wall[2]:.1f} s, {wall[1] / wall[2]:.2f}x); {note}"),
        metric(AREA, "best valid AUC, |2 worker processes - 1|", abs(best[2] - best[1]), "AUC",
               target="≤ 0.002 AUC", note=f"{best[1]:.4f} with 1, {best[2]:.4f} with 2"),
    ]  # fmt: skip


def run(quick: bool) -> list[dict[str, Any]]:
    from tasks.buffered_log import MAX_BUFFER_ROWS

    rows, batches = (2_000, 2) if quick else (MAX_BUFFER_ROWS, 6)
    load = os.getloadavg()[0]
    note = f"{batches} flushes of {rows} rows, {9 + INPUTS} columns; load average {load:.1f}"
    try:
        with _database() as url:
            one = Stats.of([_write_rate(url, rows, batches, s) for s in range(1 if quick else 3)])
            two = _two_replicas(url, rows, batches)
    except Exception as exc:  # noqa: BLE001 - PostgreSQL missing: say so, measure nothing
        why = f"PostgreSQL at {ADMIN_URL}: {type(exc).__name__}: {exc}"
        return [not_available(AREA, "prediction-log write to PostgreSQL", "rows/s", why)]
    parquet = Stats.of([_write_rate(None, rows, batches, s) for s in range(1 if quick else 3)])
    return [
        *_serving_rows(quick),
        *_tuning_rows(quick),
        metric(AREA, "prediction-log write to PostgreSQL, one replica", None, "rows/s",
               target="≥ 50000 rows/s", stats=one, note=note + "; one binary COPY per flush"),
        metric(AREA, "prediction-log write to PostgreSQL, each of two replicas at once",
               min(two), "rows/s", target="≥ 50000 rows/s",
               note=f"the slower of two processes flushing into one table ({note})"),
        metric(AREA, "prediction-log write to Parquet files, one replica", None, "rows/s",
               stats=parquet, note=note + "; the embedded default, side by side"),
    ]  # fmt: skip


if __name__ == "__main__":
    from bench.harness import main

    main(AREA, run)
