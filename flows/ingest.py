"""Ingest flow: a CSV/Parquet file in, a validated, versioned snapshot + quarantine + report out."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from schemas import load_dataset
from tasks import data
from tasks.settings import get_settings


class IngestConfig(BaseModel):
    """Everything one ingest run needs; deployments override fields in prefect.yaml."""

    path: str = Field(description="CSV or Parquet file to ingest.")
    dataset: str = "telco"
    delimiter: str = ","
    encoding: str = "utf-8"
    extra_columns: Literal["reject", "drop"] | None = None
    max_missing_share: float = 0.2
    max_quarantine_share: float = 0.05
    max_duplicate_share: float = 0.01
    max_staleness_hours: float | None = None
    fail_on_quality: bool = True


class QualityGateError(RuntimeError):
    """The data passed parsing but broke a data-quality threshold (the report is written)."""

    def __init__(self, failures: list[str], result: dict[str, Any]):
        super().__init__("data quality failed: " + "; ".join(failures))
        self.result = result


# no cache key: Prefect would hash the inputs, i.e. pickle every row of the split (~400 MiB
# more peak memory at 1M rows), for a step that is never served from a cache anyway
read_table = task(data.read_table, name="read_table", cache_policy=NO_CACHE)
save_snapshot = task(data.save_snapshot, name="save_snapshot", retries=2, cache_policy=NO_CACHE)


@flow(name="ingest", log_prints=True)
def ingest(config: IngestConfig) -> dict[str, Any]:
    """Read -> parse -> validate -> quarantine -> snapshot -> quality report."""
    settings = get_settings().apply_env()
    dataset = load_dataset(config.dataset)
    raw = read_table(
        path=Path(config.path), dataset=dataset, delimiter=config.delimiter,
        encoding=config.encoding, extra_columns=config.extra_columns,
    )  # fmt: skip
    parsed = data.parse_table(raw=raw, dataset=dataset)
    failures = data.validate_table(parsed=parsed, dataset=dataset)
    split = data.split_rows(parsed=parsed, failures=failures)
    snapshot = save_snapshot(split=split, dataset=dataset, source=raw.source, settings=settings)
    thresholds = data.QualityThresholds(
        max_missing_share=config.max_missing_share,
        max_quarantine_share=config.max_quarantine_share,
        max_duplicate_share=config.max_duplicate_share,
        max_staleness_hours=config.max_staleness_hours,
    )
    report = data.quality_report(parsed=parsed, split=split, dataset=dataset, thresholds=thresholds)
    stem = f"{snapshot.data_version}-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    data.write_quality_report(report, settings.reports_dir / "ingest", stem)
    result = data.make_result(snapshot=snapshot, split=split, report=report).summary()
    if report.failed and config.fail_on_quality:
        raise QualityGateError(report.failed, result)
    return result
