"""``feature_matrix`` encodes small frames in Python: the matrix is exactly the polars
expressions' (``to_matrix(build_features(...))``) for every column type it takes that path for,
and any other type goes through polars."""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.features import SMALL_ROWS, FeatureSpec, _row_plan, build_features, feature_matrix
from tasks.features import to_matrix as polars_matrix

DOMAIN = ("No", "Yes", "0", "1", "-3", "true", "false")
SPEC = FeatureSpec(
    columns=("s_cat", "i_cat", "b_cat", "e_cat", "c_cat", "i64", "u32", "f64", "f32", "flag"),
    categories={c: DOMAIN for c in ("s_cat", "i_cat", "b_cat", "e_cat", "c_cat")},
)
SCHEMA = {"s_cat": pl.String, "i_cat": pl.Int64, "b_cat": pl.Boolean,
          "e_cat": pl.Enum(["Yes", "Other", "No"]), "c_cat": pl.Categorical(), "i64": pl.Int64,
          "u32": pl.UInt32, "f64": pl.Float64, "f32": pl.Float32, "flag": pl.Boolean}  # fmt: skip
VALUES = {
    "e_cat": st.sampled_from(["Yes", "Other", "No"]),
    "c_cat": st.sampled_from([*DOMAIN, "Maybe"]),
    "s_cat": st.sampled_from([*DOMAIN, "Maybe", "", "yes"]),
    "i_cat": st.integers(-5, 5),
    "b_cat": st.booleans(),
    "i64": st.integers(-(2**63), 2**63 - 1),
    "u32": st.integers(0, 2**32 - 1),
    "f64": st.floats(allow_nan=True, allow_infinity=True),
    "f32": st.floats(width=32, allow_nan=True, allow_infinity=True),
    "flag": st.booleans(),
}
ROW = st.fixed_dictionaries({c: st.none() | values for c, values in VALUES.items()})


@settings(max_examples=300, deadline=None)
@given(st.lists(ROW, min_size=0, max_size=SMALL_ROWS))
def test_small_frames_encode_as_the_polars_expressions_do(rows):
    frame = pl.DataFrame(rows, schema=SCHEMA)
    assert _row_plan(SPEC, frame) is not None  # the Python path runs
    got = feature_matrix(frame, SPEC)
    assert got.flags.c_contiguous and got.dtype == np.float64
    np.testing.assert_array_equal(got, polars_matrix(build_features(frame, SPEC)))


def test_types_without_an_exact_twin_and_large_frames_go_through_polars():
    spec = FeatureSpec(columns=("f_cat", "text", "day"), categories={"f_cat": ("1.0", "2.5")})
    frame = pl.DataFrame({"f_cat": [1.0, 2.5, None], "text": ["1.5", "x", None],
                          "day": [None, 3, 4]})  # fmt: skip
    frame = frame.with_columns(pl.col("day").cast(pl.Date))
    for col in spec.columns:  # a float category's text, a string parsed as a number, a date
        one = FeatureSpec(columns=(col,), categories={k: v for k, v in spec.categories.items()
                                                      if k == col})  # fmt: skip
        assert _row_plan(one, frame) is None
    expected = np.array([[0.0, 1.5, np.nan], [1.0, np.nan, 3.0], [np.nan, np.nan, 4.0]])
    np.testing.assert_array_equal(feature_matrix(frame, spec), expected)
    big = pl.DataFrame({"s_cat": ["Yes"] * (SMALL_ROWS + 1)}, schema={"s_cat": pl.String})
    one = FeatureSpec(columns=("s_cat",), categories={"s_cat": DOMAIN})
    np.testing.assert_array_equal(feature_matrix(big, one), np.ones((SMALL_ROWS + 1, 1)))


def test_a_missing_feature_column_is_named():
    frame = pl.DataFrame({"s_cat": ["No"]})
    try:
        feature_matrix(frame, SPEC)
    except ValueError as exc:
        assert "i_cat" in str(exc)
    else:
        raise AssertionError("no error for missing feature columns")
