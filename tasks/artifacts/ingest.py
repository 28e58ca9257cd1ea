"""The ingest run's artifacts: rows in/accepted/quarantined, the four data-quality
dimensions, failures by check, a link to the quality report."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.artifacts import Artifact, artifact_key, file_link, lineage, pairs, publish

if TYPE_CHECKING:
    from tasks.ingest.compose import IngestResult


def ingest_markdown(result: IngestResult, dataset: str) -> str:
    """Rows in/accepted/quarantined, the four quality dimensions, failures, the report."""
    q = result.quality.data if result.quality else {}
    verdict = "PASSED" if result.quality_passed else "FAILED"
    missing = (q.get("completeness") or {}).get("missing_share") or {}
    worst = max(missing.items(), key=lambda kv: kv[1], default=(None, 0.0))
    lines = [
        f"# Ingest {dataset}: quality {verdict}",
        lineage(None, result.data_version),
        "",
        f"**{result.rows_in} rows in**: {result.rows_accepted} accepted, "
        f"{result.rows_quarantined} quarantined.",
        *[f"- ❌ {f}" for f in result.quality_failures],
        f"- Completeness: most missing {worst[0] or '-'} ({worst[1]:.2%})",
        f"- Consistency: {pairs(q.get('consistency'))}",
        f"- Accuracy: {pairs(q.get('accuracy'))}",
        f"- Timeliness: {pairs(q.get('timeliness')) or 'no event-time column'}",
    ]
    if result.report is not None:
        lines.append(f"- Report: [{result.report.name}]({file_link(result.report)})")
    return "\n".join(lines)


def ingest_artifacts(result: IngestResult, dataset: str) -> list[Artifact]:
    """Summary, failures by check (table) and a link to the quality report."""
    key = artifact_key("ingest", dataset)
    out = [Artifact(key, "markdown", "ingest: rows, data quality",
                    ingest_markdown(result, dataset))]  # fmt: skip
    by_check = (result.quality.data.get("failures_by_check") if result.quality else None) or []
    rows = [{"column": r.get("column"), "check": r.get("check"), "rows": r.get("len")}
            for r in by_check]  # fmt: skip
    if rows:
        desc = f"ingest failures by check ({lineage(None, result.data_version)})"
        out.append(Artifact(f"{key}-failures", "table", desc, rows))
    if result.report is not None:
        desc = f"data-quality report ({lineage(None, result.data_version)})"
        out.append(Artifact(f"{key}-report", "link", desc, file_link(result.report),
                            link_text=result.report.name))  # fmt: skip
    return out


def publish_ingest(result: IngestResult, dataset: str) -> list[str]:
    """The ingest run's artifacts (only inside a flow run)."""
    return publish(ingest_artifacts(result, dataset))
