"""What one ingest run may be told: how to read the file and the quality limits.

The defaults are stated here only: the ingest flow's config and the ``driftloop ingest``
options derive from these models.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class QualityThresholds(BaseModel):
    """Limits of the four data-quality dimensions; exceeding one fails the ingest."""

    max_missing_share: float = Field(0.2, description="Completeness: max missing, per column.")
    max_quarantine_share: float = Field(
        0.05, description="Consistency + accuracy: max share of rows quarantined."
    )
    max_duplicate_share: float = Field(0.01, description="Consistency: max share of repeated ids.")
    max_staleness_hours: float | None = Field(
        None, description="Timeliness, when the dataset has an event time: max age of the newest."
    )


class IngestOptions(QualityThresholds):
    """How to read a file (delimiter, encoding, extra columns) and the quality limits."""

    delimiter: str = Field(",", description="CSV field delimiter.")
    encoding: str = Field("utf-8", description="CSV text encoding.")
    extra_columns: Literal["reject", "drop"] | None = Field(
        None, description="Columns the contract does not name: reject or drop (default: schema's)."
    )

    def thresholds(self) -> QualityThresholds:
        """The quality limits alone."""
        return QualityThresholds(**self.model_dump(include=set(QualityThresholds.model_fields)))
