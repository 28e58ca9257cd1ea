"""Shared record contracts: what the service logs and what feedback looks like.

Prediction log (``$DRIFTLOOP_HOME/serving/predictions/*.parquet``, one file per flushed batch):
the columns of :class:`PredictionRecord` followed by the dataset's input columns (the contract's
columns minus the target), typed as the contract types them.

Feedback (``$DRIFTLOOP_HOME/serving/feedback/*.parquet``): :class:`FeedbackRecord`, joinable to
predictions on ``request_id`` or on ``entity_id``.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

TS = pl.Datetime("us", "UTC")


class PredictionRecord(pa.DataFrameModel):
    """One scored record. ``shadow_*`` are filled when a challenger scored it too; ``arm`` is
    the rollout arm it was routed to, ``model_tag`` the model that answered."""

    request_id: str = pa.Field(unique=True)
    entity_id: str = pa.Field(nullable=True)
    ts: pl.Datetime(time_unit="us", time_zone="UTC")  # type: ignore[valid-type]
    model_tag: str
    score: pl.Float64 = pa.Field(nullable=False)
    decision: pl.Boolean = pa.Field(nullable=True)
    shadow_tag: str = pa.Field(nullable=True)
    shadow_score: pl.Float64 = pa.Field(nullable=True)
    latency_ms: pl.Float64 = pa.Field(nullable=True)
    # the rollout arm the request was routed to; logs from before rollouts lack it (champion)
    arm: str | None = pa.Field(nullable=True, isin=["champion", "challenger"])

    class Config:
        strict = False  # the dataset's input columns follow


class FeedbackRecord(pa.DataFrameModel):
    """A delayed ground-truth label. ``label`` is numeric: 1/0 for binary tasks."""

    request_id: str = pa.Field(nullable=True)
    entity_id: str = pa.Field(nullable=True)
    label: pl.Float64
    ts: pl.Datetime(time_unit="us", time_zone="UTC")  # type: ignore[valid-type]

    @pa.dataframe_check
    def has_a_key(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            pl.col("request_id").is_not_null() | pl.col("entity_id").is_not_null()
        )

    class Config:
        strict = True


PREDICTION_COLUMNS = list(PredictionRecord.to_schema().columns)
