"""tasks.profiling: the whylogs shim and fast path, profiles, the reference."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from schemas import load_dataset
from tasks import profiling
from tasks.settings import get_settings


def _frame(n: int = 500, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    x[:7] = np.nan
    x[7:10] = np.inf
    return pl.DataFrame(
        {
            "x": x,
            "k": rng.integers(0, 5, n),
            "c": rng.choice(["a", "b", "c"], n),
            "flag": rng.random(n) < 0.5,
        }
    )


def test_fast_path_counts_match_stock_whylogs():
    frame = _frame()
    profiling.use_stock_whylogs(True)
    try:
        stock = profiling.summarize_profile(profiling.profile_frame(frame))
    finally:
        profiling.use_stock_whylogs(False)
    fast = profiling.summarize_profile(profiling.profile_frame(frame))
    assert fast == stock
    assert fast["x"]["null"] == 7 and fast["x"]["inf"] == 3 and fast["x"]["n"] == 500
    assert set(fast["c"]["top"]) == {"a", "b", "c"}


def _full_summaries(frame: pl.DataFrame, stock: bool) -> dict:
    """Every whylogs summary of every column (NaN as None so equal summaries compare equal)."""
    profiling.use_stock_whylogs(stock)
    try:
        view = profiling.profile_frame(frame)
    finally:
        profiling.use_stock_whylogs(False)
    return {
        name: {k: None if isinstance(v, float) and np.isnan(v) else v
               for k, v in col.to_summary_dict().items()}
        for name, col in view.get_columns().items()
    }  # fmt: skip


def test_string_fast_path_and_schema_give_whylogs_own_summaries():
    """String columns (with nulls, non-ASCII, all-null, a value longer than whylogs' 128-char
    frequent-item cut) and the StandardResolver schema: every summary whylogs makes, as stock."""
    rng = np.random.default_rng(3)
    n = 3_000
    c = rng.choice(["a", "b", "é✓", "x" * 200], n).astype(object)
    c[:40] = None
    frame = pl.DataFrame({
        "c": list(c), "short": rng.choice(["p", "q"], n), "flag": rng.random(n) < 0.3,
        "empty": pl.Series([None] * n, dtype=pl.String),
    })  # fmt: skip
    short = frame.with_columns(pl.col("c").replace("x" * 200, "x"))
    summaries = {}
    for name, rows in (("long", frame), ("short", short)):  # whylogs' path, then the fast one
        summaries[name] = _full_summaries(rows, stock=False)
        assert summaries[name] == _full_summaries(rows, stock=True)
    fast = summaries["short"]
    assert fast["c"]["counts/null"] == 40
    assert fast["c"]["types/string"] == fast["c"]["counts/n"] - 40
    assert fast["empty"]["counts/null"] == n and fast["empty"]["types/string"] == 0
    assert not any(k.startswith("unicode_range") for k in fast["c"])


def test_numpy2_shim_installed():
    profiling._whylogs()
    assert np.unicode_ is np.str_


def test_chunked_profile_equals_one_pass():
    frame = _frame(1_000, seed=1).drop("x")
    one = profiling.summarize_profile(profiling.profile_frame(frame))
    chunked = profiling.summarize_profile(profiling.profile_frame(frame, chunk_rows=300))
    assert one["k"]["n"] == chunked["k"]["n"] == 1_000
    assert one["k"]["mean"] == pytest.approx(chunked["k"]["mean"])
    assert one["c"]["top"] == chunked["c"]["top"]


def test_profile_roundtrip(tmp_path):
    view = profiling.profile_frame(_frame())
    path = profiling.write_profile(view, tmp_path / "p.bin")
    back = profiling.summarize_profile(profiling.read_profile(path))
    assert back == profiling.summarize_profile(view)
    with pytest.raises(FileNotFoundError, match="no whylogs profile"):
        profiling.read_profile(tmp_path / "missing.bin")


def _telco_rows(n: int, seed: int = 0) -> pl.DataFrame:
    ds = load_dataset("telco")
    rng = np.random.default_rng(seed)
    cols = {}
    for name in ds.feature_columns:
        info = ds.columns[name]
        if info.is_categorical:
            cols[name] = rng.choice(list(info.categories), n)
        elif info.dtype == pl.Int64:
            cols[name] = rng.integers(0, 2 if name == "SeniorCitizen" else 72, n)
        else:
            cols[name] = rng.uniform(18, 118, n)
    return pl.DataFrame(cols)


def test_save_and_load_reference(home):
    ds = load_dataset("telco")
    rows = _telco_rows(300)
    scores = np.linspace(0, 1, 300)
    path = profiling.save_reference_profile(rows, scores, "telco:abc123", ds, sample_rows=100)
    settings = get_settings()
    assert path == settings.reference_profiles_dir / "telco_abc123.bin"
    ref = profiling.load_reference("telco:abc123")
    assert ref.sample.height == 100
    assert set(ref.sample.columns) == {*ds.feature_columns, profiling.SCORE_COLUMN}
    assert ref.meta["rows"] == 300 and ref.meta["dataset"] == "telco"
    summary = profiling.summarize_profile(ref.profile())
    assert summary[profiling.SCORE_COLUMN]["n"] == 300
    assert summary["tenure"]["n"] == 300


def test_save_reference_rejects_bad_input(home):
    ds = load_dataset("telco")
    rows = _telco_rows(10)
    with pytest.raises(ValueError, match="3 scores for 10"):
        profiling.save_reference_profile(rows, np.zeros(3), "telco:x", ds)
    with pytest.raises(ValueError, match="tenure"):
        profiling.save_reference_profile(rows.drop("tenure"), np.zeros(10), "telco:x", ds)
    with pytest.raises(FileNotFoundError, match="no reference profile"):
        profiling.load_reference("telco:never")


def test_whylogs_private_split_is_what_the_fast_path_replaces():
    """The fast path swaps whylogs' private ``PreprocessedColumn._pandas_split(self, series,
    parse_numeric_string=False)`` and sets the fields whylogs' own sets (null_count, nan_count,
    inf_count, numpy.floats): a whylogs that renames any of them fails here."""
    import inspect

    import pandas as pd

    profiling._whylogs()
    from whylogs.core.preprocessing import PreprocessedColumn

    assert PreprocessedColumn._pandas_split is profiling._fast_pandas_split
    stock = PreprocessedColumn._stock_pandas_split
    assert list(inspect.signature(stock).parameters) == ["self", "series", "parse_numeric_string"]
    series = pd.Series([1.0, np.nan, np.inf, 2.0])
    theirs, ours = PreprocessedColumn(), PreprocessedColumn()
    stock(theirs, series)
    profiling._fast_pandas_split(ours, series)
    for col in (theirs, ours):
        assert (col.null_count, col.nan_count, col.inf_count) == (1, 1, 1)
    np.testing.assert_array_equal(ours.numpy.floats, theirs.numpy.floats)
