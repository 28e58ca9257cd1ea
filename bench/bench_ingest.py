"""Ingest benchmark: end-to-end rows/s, and pandera validation vs hand-written polars checks.

End to end = ``tasks.ingest.compose.ingest_file`` (read, parse, validate, quarantine, content hash,
snapshot, quality report) on a generated CSV of N rows x 20 columns. The validation ratio
times ``DataFrameModel.validate(lazy=True)`` against polars expressions doing the same checks
(dtypes, nullability, domains, ranges) on the same parsed frame, side by side.
"""

from __future__ import annotations

import time
from typing import Any

import polars as pl

from bench.harness import compare, isolated_home, main, metric, ratio, scratch_dir, write_synthetic

AREA = "ingest"


def _hand_written_checks(frame: pl.DataFrame, dataset) -> int:
    """The contract's checks as plain polars expressions; returns the number of bad rows."""
    for name, col in dataset.columns.items():
        if frame.schema[name] != col.dtype:
            raise TypeError(name)
    oks = []
    for name, col in dataset.columns.items():
        ok = pl.lit(True) if col.nullable else pl.col(name).is_not_null()
        if col.categories is not None:
            ok = ok & pl.col(name).is_in(list(col.categories))
        if col.min_value is not None:
            ok = ok & (pl.col(name) >= col.min_value)
        if col.max_value is not None:
            ok = ok & (pl.col(name) <= col.max_value)
        oks.append(ok.fill_null(col.nullable))
    return int(frame.select((~pl.all_horizontal(oks)).sum()).item())


def _pandera(frame: pl.DataFrame, dataset) -> int:
    import pandera.polars as pa

    try:
        dataset.model.validate(frame, lazy=True)
        return 0
    except pa.errors.SchemaErrors as exc:
        return exc.failure_cases["index"].n_unique()


def run(quick: bool) -> list[dict[str, Any]]:
    from schemas import load_dataset
    from tasks.ingest.compose import ingest_file
    from tasks.ingest.parse import parse_table
    from tasks.ingest.read import read_table

    rows = 20_000 if quick else 1_000_000
    repeats = 2 if quick else 5
    out: list[dict[str, Any]] = []
    with isolated_home(quick):
        csv, module = write_synthetic(scratch_dir(), rows=rows, cols=20, seed=0)
        dataset = load_dataset(str(module))
        from tasks.settings import get_settings

        snapshots = get_settings().snapshots_dir
        times = []
        for _ in range(repeats):
            for old in snapshots.glob("*.parquet"):  # a snapshot already on disk is not
                old.unlink()  # rewritten: every timed run must write its own
            t0 = time.perf_counter()
            result = ingest_file(csv, dataset)
            times.append(time.perf_counter() - t0)
        assert result.rows_in == rows == result.rows_accepted + result.rows_quarantined
        from bench.harness import Stats

        stats = Stats.of(times)
        out.append(
            metric(AREA, f"end-to-end ingest, {rows:,} rows x 20 cols", rows / stats.median,
                   "rows/s", target="≥ 500000 rows/s" if not quick else None, stats=None,
                   note=f"median {stats.median:.2f} s over {stats.n} runs "
                        f"(spread {stats.spread:.2f} s); each run reads, validates and writes "
                        "its snapshot")
        )  # fmt: skip
        parsed = parse_table(read_table(csv, dataset), dataset).frame.drop("_line")
        timed = compare(
            {
                "pandera": lambda: _pandera(parsed, dataset),
                "polars": lambda: _hand_written_checks(parsed, dataset),
            },
            n=repeats + 2,
            warmup=1,
        )
        assert _pandera(parsed, dataset) == _hand_written_checks(parsed, dataset)
        out.append(metric(AREA, "pandera validation", None, "s", stats=timed["pandera"]))
        out.append(metric(AREA, "hand-written polars checks", None, "s", stats=timed["polars"]))
        out.append(
            metric(AREA, "pandera ÷ hand-written polars", None, "x",
                   target="≤ 3 x", stats=ratio(timed["pandera"], timed["polars"]),
                   note="same parsed frame, same checks, measured round-robin")
        )  # fmt: skip
    return out


if __name__ == "__main__":
    main(AREA, run)
