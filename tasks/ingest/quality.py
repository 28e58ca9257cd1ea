"""Data quality: completeness, consistency, accuracy and timeliness of one ingest, judged
against ``config.QualityThresholds``, as a JSON report and a Markdown page."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from schemas.base import DatasetSpec
from tasks.ingest.config import QualityThresholds
from tasks.ingest.table import ParsedTable, Split, without_line
from tasks.io import atomic_write, write_json


class DataQualityFailed(Exception):
    """Data broke a data-quality threshold (its report is written): every command that meets
    one exits with the README's code for it (see ``driftloop.output``)."""


@dataclass
class QualityReport:
    data: dict[str, Any]
    failed: list[str] = field(default_factory=list)
    json_path: Path | None = None
    page_path: Path | None = None


def _check_kind(check: str) -> str:
    if check.startswith("type:"):
        return "type"
    if check.startswith("malformed"):
        return "malformed"
    if check.startswith("duplicate id"):
        return "duplicate_id"
    if check.startswith("isin") or check.startswith("str_matches"):
        return "domain"
    if check.startswith(("greater_than", "less_than", "in_range", "equal_to")):
        return "range"
    if check == "not_nullable":
        return "missing"
    return "rule"


def quality_report(
    parsed: ParsedTable,
    split: Split,
    dataset: DatasetSpec,
    thresholds: QualityThresholds,
    now: datetime | None = None,
) -> QualityReport:
    """Completeness, consistency, accuracy and timeliness, with the thresholds that failed."""
    frame = without_line(parsed.frame)
    rows = max(frame.height, 1)
    missing = {c: frame[c].null_count() / rows for c in frame.columns}
    checks = split.failures["check"].unique().to_list()
    kinds = split.failures.with_columns(
        pl.col("check")
        .replace_strict({c: _check_kind(c) for c in checks}, return_dtype=pl.String)
        .alias("kind")
    )
    by_kind = dict(kinds.group_by("kind").len().iter_rows())
    by_check = (
        kinds.group_by("column", "check")
        .len()
        .sort(["len", "column", "check"], descending=[True, False, False], nulls_last=True)
        .head(50)
        .to_dicts()
    )
    duplicates = int(by_kind.get("duplicate_id", 0))
    quarantine_share = split.quarantined.height / rows
    data: dict[str, Any] = {
        "dataset": dataset.name,
        "rows_in": frame.height,
        "rows_accepted": split.accepted.height,
        "rows_quarantined": split.quarantined.height,
        "completeness": {"missing_share": missing},
        "consistency": {
            "duplicate_ids": duplicates,
            "type_violations": int(by_kind.get("type", 0)),
            "domain_violations": int(by_kind.get("domain", 0)),
            "malformed_lines": int(by_kind.get("malformed", 0)),
            "rule_violations": int(by_kind.get("rule", 0)),
        },
        "accuracy": {"range_violations": int(by_kind.get("range", 0))},
        "timeliness": {},
        "failures_by_check": by_check,
        "thresholds": thresholds.model_dump(),
    }
    failed = [
        f"completeness: column {c!r} is {share:.1%} missing "
        f"(max {thresholds.max_missing_share:.0%})"
        for c, share in missing.items()
        if share > thresholds.max_missing_share
    ]
    if quarantine_share > thresholds.max_quarantine_share:
        failed.append(
            f"consistency: {quarantine_share:.1%} of rows quarantined "
            f"(max {thresholds.max_quarantine_share:.0%})"
        )
    if duplicates / rows > thresholds.max_duplicate_share:
        failed.append(
            f"consistency: {duplicates} duplicate ids ({duplicates / rows:.1%}, "
            f"max {thresholds.max_duplicate_share:.0%})"
        )
    if dataset.event_time and split.accepted.height:
        latest = split.accepted[dataset.event_time].max()
        now = now or datetime.now(UTC)
        if latest is not None:
            if getattr(latest, "tzinfo", None) is None and hasattr(latest, "replace"):
                latest = latest.replace(tzinfo=UTC)
            age_h = (now - latest).total_seconds() / 3600
            data["timeliness"] = {"latest_event": str(latest), "age_hours": age_h}
            limit = thresholds.max_staleness_hours
            if limit is not None and age_h > limit:
                failed.append(f"timeliness: newest event is {age_h:.1f} h old (max {limit} h)")
    data["failed"] = failed
    data["passed"] = not failed
    return QualityReport(data, failed)


def write_quality_report(report: QualityReport, directory: Path, stem: str) -> QualityReport:
    """Write the report as JSON and as a Markdown page a person can read."""
    d = report.data
    lines = [
        f"# Data quality: {d['dataset']} ({stem})",
        "",
        f"**{'PASSED' if d['passed'] else 'FAILED'}** — {d['rows_in']} rows in, "
        f"{d['rows_accepted']} accepted, {d['rows_quarantined']} quarantined.",
        "",
    ]
    lines += [f"- ❌ {f}" for f in d["failed"]] + [""]
    lines += ["## Completeness (missing share)", "", "| column | missing |", "|---|---|"]
    lines += [f"| {c} | {s:.2%} |" for c, s in d["completeness"]["missing_share"].items()]
    lines += ["", "## Consistency", ""]
    lines += [f"- {k}: {v}" for k, v in d["consistency"].items()]
    lines += ["", "## Accuracy", ""] + [f"- {k}: {v}" for k, v in d["accuracy"].items()]
    lines += ["", "## Timeliness", ""]
    lines += [f"- {k}: {v}" for k, v in d["timeliness"].items()] or ["- no event-time column"]
    lines += ["", "## Failures by check", "", "| column | check | rows |", "|---|---|---|"]
    lines += [f"| {r['column']} | {r['check']} | {r['len']} |" for r in d["failures_by_check"]]
    json_path = directory / f"{stem}.json"
    page_path = directory / f"{stem}.md"
    write_json(json_path, d)
    atomic_write(page_path, "\n".join(lines).encode())
    report.json_path, report.page_path = json_path, page_path
    return report
