"""The ingest flow under a real Prefect server leaves its artifacts: rows, the four quality
dimensions, failures by check and a link to the report; a failed quality gate still shows why."""

from __future__ import annotations

import polars as pl
import pytest

from flows.ingest import IngestConfig, QualityGateError, ingest
from tasks import events
from tests.support.artifacts import latest_artifacts, table_rows
from tests.support.telco import TELCO_CSV


def test_ingest_artifacts_carry_rows_dimensions_failures_and_report(
    home, prefect_harness, tmp_path
):
    raw = pl.read_csv(TELCO_CSV, infer_schema=False).head(400)
    bad = raw.head(3).with_columns(pl.lit("-5").alias("tenure"))  # a range failure
    src = tmp_path / "batch.csv"
    pl.concat([raw, bad.with_columns(pl.lit("X-1").alias("customerID"))]).write_csv(src)
    result = ingest(IngestConfig(path=str(src)))
    assert (result["rows_in"], result["rows_quarantined"]) == (403, 3)

    found = latest_artifacts("ingest-telco", "ingest-telco-failures", "ingest-telco-report")
    body = found["ingest-telco"].data
    assert "# Ingest telco: quality PASSED" in body
    assert f"data version `{result['data_version']}`" in body
    assert "**403 rows in**: 400 accepted, 3 quarantined." in body
    assert "Accuracy: range_violations 3" in body and "Consistency: duplicate_ids" in body
    assert "Completeness: most missing" in body and "Timeliness:" in body
    (row,) = table_rows(found["ingest-telco-failures"])
    assert (row["column"], row["rows"]) == ("tenure", 3)
    report = result["report"]
    assert found["ingest-telco-report"].data.endswith(f"(file://{report})")
    assert _quality_events() == []  # quality passed: nothing to alert


def test_failed_quality_gate_still_publishes_why(home, prefect_harness, tmp_path):
    raw = pl.read_csv(TELCO_CSV, infer_schema=False).head(200)
    src = tmp_path / "holes.csv"
    raw.with_columns(pl.lit(None, dtype=pl.String).alias("TotalCharges")).write_csv(src)
    with pytest.raises(QualityGateError):
        ingest(IngestConfig(path=str(src)))
    body = latest_artifacts("ingest-telco")["ingest-telco"].data
    assert "quality FAILED" in body and "- ❌ completeness: column 'TotalCharges'" in body
    assert "most missing TotalCharges (100.00%)" in body
    (event,) = _quality_events()  # the notification's event, delivered to Prefect
    assert events.wait_confirmed([event["id"]], timeout_s=30)
    assert event["resource"]["prefect.resource.id"] == "driftloop.model.telco"
    payload = event["payload"]
    assert payload["source"] == "ingest" and payload["reason"].startswith("ingest data quality")
    assert "TotalCharges" in payload["reason"] and payload["rows_in"] == 200
    assert payload["quality_failures"] and payload["data_version"]
    assert payload["report"].endswith(".md")


def _quality_events() -> list[dict]:
    found = [*events.pending_events(), *events.sent_events()]
    return [r for r in found if r["event"] == events.DATA_QUALITY_FAILED]
