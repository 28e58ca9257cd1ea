"""Ingest flow: a CSV/Parquet file in, a validated, versioned snapshot + quarantine + report out."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from schemas import load_dataset
from tasks.artifacts import ingest as artifacts
from tasks.ingest import compose, read, snapshot
from tasks.ingest.config import IngestOptions
from tasks.ingest.quality import DataQualityFailed
from tasks.settings import get_settings


class IngestConfig(IngestOptions):
    """Everything one ingest run needs (reading and quality options as ``IngestOptions``);
    deployments override fields in prefect.yaml."""

    path: str = Field(description="CSV or Parquet file to ingest.")
    dataset: str = Field("telco", description="Schema module name.")
    fail_on_quality: bool = Field(True, description="Fail the run when a threshold is broken.")


class QualityGateError(DataQualityFailed, RuntimeError):
    """The data passed parsing but broke a data-quality threshold (the report is written)."""

    def __init__(self, failures: list[str], result: dict[str, Any]):
        super().__init__("data quality failed: " + "; ".join(failures))
        self.result = result


# no cache key: Prefect would hash the inputs, i.e. pickle every row of the split (~400 MiB
# more peak memory at 1M rows), for a step that is never served from a cache anyway
read_table = task(read.read_table, name="read_table", cache_policy=NO_CACHE)
save_snapshot = task(snapshot.save_snapshot, name="save_snapshot", cache_policy=NO_CACHE, retries=2)
STEPS = compose.IngestSteps(read=read_table, save=save_snapshot)
emit_quality_failed = task(
    compose.emit_quality_failed, name="emit_quality_failed", cache_policy=NO_CACHE
)


@flow(name="ingest", log_prints=True)
def ingest(config: IngestConfig) -> dict[str, Any]:
    """Read -> parse -> validate -> quarantine -> snapshot -> quality report (and the
    data-quality event when a threshold broke)."""
    settings, dataset = get_settings().apply_env(), load_dataset(config.dataset)
    result = compose.ingest_file(
        path=config.path, dataset=dataset, options=config, settings=settings, steps=STEPS,
    )  # fmt: skip
    artifacts.publish_ingest(result=result, dataset=config.dataset)
    emit_quality_failed(result=result, model_name=dataset.name)  # alerts, never retrains
    if result.quality_failures and config.fail_on_quality:
        raise QualityGateError(result.quality_failures, result.summary())
    return result.summary()
