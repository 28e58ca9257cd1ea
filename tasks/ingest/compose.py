"""Ingest composed once: read -> parse -> validate -> split -> snapshot -> quality report.

:func:`ingest_file` is what the ingest flow (with its steps made Prefect tasks) and training
both call, with one :class:`~tasks.ingest.config.IngestOptions`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import polars as pl

from schemas.base import DatasetSpec
from tasks.ingest.config import IngestOptions
from tasks.ingest.parse import parse_table
from tasks.ingest.quality import QualityReport, quality_report, write_quality_report
from tasks.ingest.read import read_table
from tasks.ingest.snapshot import Snapshot, save_snapshot
from tasks.ingest.table import Split
from tasks.ingest.validate import split_rows, validate_table

if TYPE_CHECKING:
    from tasks.settings import Settings


@dataclass(frozen=True)
class IngestResult:
    data_version: str
    rows_in: int
    rows_accepted: int
    rows_quarantined: int
    snapshot: Path
    quarantine: Path
    manifest: Path
    report: Path | None
    quality_passed: bool
    quality_failures: list[str]
    accepted: pl.DataFrame
    quarantined: pl.DataFrame
    quality: QualityReport | None = None  # the four dimensions (what the UI shows)

    def summary(self) -> dict[str, Any]:
        """The JSON-able part (no frames)."""
        return {
            "data_version": self.data_version,
            "rows_in": self.rows_in,
            "rows_accepted": self.rows_accepted,
            "rows_quarantined": self.rows_quarantined,
            "snapshot": str(self.snapshot),
            "quarantine": str(self.quarantine),
            "manifest": str(self.manifest),
            "report": str(self.report) if self.report else None,
            "quality_passed": self.quality_passed,
            "quality_failures": self.quality_failures,
        }


def make_result(snapshot: Snapshot, split: Split, report: QualityReport) -> IngestResult:
    return IngestResult(
        data_version=snapshot.data_version,
        rows_in=split.accepted.height + split.quarantined.height,
        rows_accepted=split.accepted.height,
        rows_quarantined=split.quarantined.height,
        snapshot=snapshot.path,
        quarantine=snapshot.quarantine_path,
        manifest=snapshot.manifest_path,
        report=report.page_path,
        quality_passed=not report.failed,
        quality_failures=list(report.failed),
        accepted=split.accepted,
        quarantined=split.quarantined,
        quality=report,
    )


class QualityEmitter(Protocol):
    """What an ingest needs of ``tasks.events`` (a test may pass a recorder)."""

    def emit_data_quality_failed(self, model_name: str, evidence: dict[str, Any]) -> str | None: ...


def emit_quality_failed(
    result: IngestResult, model_name: str, emitter: QualityEmitter | None = None
) -> str | None:
    """``driftloop.data_quality.failed`` when the file broke a quality threshold (the monitor's
    event for a bad window, so one notification covers both): the failures, the data version,
    the rows and the report. Returns the event's id; None when quality passed or Prefect is
    off (the outbox keeps the event)."""
    if not result.quality_failures:
        return None
    if emitter is None:
        from tasks import events

        emitter = events  # type: ignore[assignment]
    reason = "ingest data quality: " + "; ".join(result.quality_failures)
    evidence = {"reason": reason, "source": "ingest", "dataset": model_name, **result.summary()}
    return emitter.emit_data_quality_failed(model_name, evidence)  # type: ignore[union-attr]


@dataclass(frozen=True)
class IngestSteps:
    """The steps that touch the outside world; the ingest flow passes them as Prefect tasks
    (visible, retryable), plain calls otherwise."""

    read: Callable[..., Any] = read_table
    save: Callable[..., Any] = save_snapshot


PLAIN_STEPS = IngestSteps()


def ingest_file(
    path: Path | str,
    dataset: DatasetSpec,
    *,
    options: IngestOptions | None = None,
    settings: Settings | None = None,
    steps: IngestSteps = PLAIN_STEPS,
) -> IngestResult:
    """Read, parse, validate, quarantine, version and report one file (no Prefect needed).

    Quality-threshold failures do not raise here: see ``IngestResult.quality_passed``.
    """
    from tasks.settings import get_settings

    settings = settings or get_settings()
    options = options or IngestOptions()
    raw = steps.read(path=Path(path), dataset=dataset, options=options)
    parsed = parse_table(raw, dataset)
    split = split_rows(parsed, validate_table(parsed, dataset))
    snapshot = steps.save(split=split, dataset=dataset, source=raw.source, settings=settings)
    report = quality_report(parsed, split, dataset, options.thresholds())
    stem = f"{snapshot.data_version}-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    write_quality_report(report, settings.reports_dir / "ingest", stem)
    return make_result(snapshot, split, report)


def read_valid_rows(
    path: Path | str, dataset: DatasetSpec, options: IngestOptions | None = None
) -> Split:
    """Parse and validate a file without writing anything (for simulation and scoring)."""
    parsed = parse_table(read_table(Path(path), dataset, options), dataset)
    return split_rows(parsed, validate_table(parsed, dataset))
