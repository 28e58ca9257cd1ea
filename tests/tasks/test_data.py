"""Ingestion: nothing lost, every bad row quarantined with its reason, versions by content."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from schemas import load_dataset
from tasks.ingest.compose import ingest_file
from tasks.ingest.config import IngestOptions
from tasks.ingest.snapshot import load_snapshot
from tasks.ingest.table import DataFileError

TELCO = load_dataset("telco")


def _reasons(quarantined: pl.DataFrame) -> dict[int, list[dict]]:
    return {row["_line"]: row["_reasons"] for row in quarantined.iter_rows(named=True)}


def test_telco_rows_are_all_accounted_for(telco_csv: Path, home: Path) -> None:
    result = ingest_file(telco_csv, TELCO)
    assert result.rows_in == 7043
    assert result.rows_accepted + result.rows_quarantined == result.rows_in
    assert result.rows_quarantined == 0
    snap = load_snapshot(result.data_version)
    assert snap.height == result.rows_accepted
    assert snap.schema["tenure"] == pl.Int64 and snap.schema["TotalCharges"] == pl.Float64
    manifest = json.loads(result.manifest.read_text())
    assert manifest["rows_in"] == 7043 and manifest["schema_hash"] == TELCO.schema_hash


def test_blank_total_charges_rule(telco_csv: Path, home: Path, tmp_path: Path) -> None:
    """Blank TotalCharges is accepted (as null) only for new customers (tenure 0)."""
    result = ingest_file(telco_csv, TELCO)
    blanks = result.accepted.filter(pl.col("TotalCharges").is_null())
    assert blanks.height == 11
    assert blanks["tenure"].to_list() == [0] * 11
    # the same blank on an established customer is a broken record
    lines = telco_csv.read_text().splitlines()
    fields = lines[1].split(",")  # 7590-VHVEG, tenure 1
    fields[19] = " "
    lines[1] = ",".join(fields)
    path = tmp_path / "blank.csv"
    path.write_text("\n".join(lines) + "\n")
    bad = ingest_file(path, TELCO)
    assert bad.rows_quarantined == 1
    reasons = _reasons(bad.quarantined)[2]
    assert [r["check"] for r in reasons] == ["total_charges_missing_only_when_new"]


def _corrupt(lines: list[str], lineno: int, col: int, value: str) -> None:
    fields = lines[lineno - 1].split(",")
    fields[col] = value
    lines[lineno - 1] = ",".join(fields)


def test_corrupted_copy_quarantines_exactly_the_bad_rows(
    telco_csv: Path, home: Path, tmp_path: Path
) -> None:
    lines = telco_csv.read_text().splitlines()
    header = lines[0].split(",")
    col = header.index
    # line numbers are 1-based file lines (line 1 is the header); each row has no comma in text
    expected = {
        10: ("tenure", "type"),  # wrong type
        20: ("MonthlyCharges", "greater_than_or_equal_to"),  # out of range
        30: ("Contract", "isin"),  # unknown category
        40: ("customerID", "duplicate id"),  # duplicate of line 2's id
        50: ("Churn", "not_nullable"),  # missing target
        60: (None, "malformed line"),  # truncated line
        70: ("MonthlyCharges", "type"),  # inf is not a number we accept
        80: (None, "malformed line"),  # extra field
    }
    _corrupt(lines, 10, col("tenure"), "abc")
    _corrupt(lines, 20, col("MonthlyCharges"), "-5")
    _corrupt(lines, 30, col("Contract"), "Weekly")
    _corrupt(lines, 40, col("customerID"), lines[1].split(",")[0])
    _corrupt(lines, 50, col("Churn"), "")
    lines[59] = ",".join(lines[59].split(",")[:15])
    _corrupt(lines, 70, col("MonthlyCharges"), "inf")
    lines[79] = lines[79] + ",extra"
    path = tmp_path / "corrupt.csv"
    path.write_text("\n".join(lines) + "\n")

    result = ingest_file(path, TELCO)
    assert result.rows_in == 7043
    assert result.rows_accepted + result.rows_quarantined == 7043
    reasons = _reasons(result.quarantined)
    assert set(reasons) == set(expected), "exactly the corrupted lines are quarantined"
    for line, (column, check) in expected.items():
        assert any(r["column"] == column and r["check"].startswith(check) for r in reasons[line]), (
            line,
            reasons[line],
        )
    # the quarantined rows are kept whole, as read
    row = result.quarantined.filter(pl.col("_line") == 30).row(0, named=True)
    assert row["Contract"] == "Weekly" and row["customerID"] == lines[29].split(",")[0]
    # every good row is accepted, and the first holder of the duplicated id stays
    good_ids = {ln.split(",")[0] for i, ln in enumerate(lines[1:], start=2) if i not in expected}
    assert set(result.accepted["customerID"].to_list()) == good_ids
    assert result.accepted.height == len(good_ids)


def test_data_version_is_content_addressed(telco_csv: Path, home: Path, tmp_path: Path) -> None:
    first = ingest_file(telco_csv, TELCO).data_version
    assert ingest_file(telco_csv, TELCO).data_version == first
    copy = tmp_path / "copy.csv"
    copy.write_bytes(telco_csv.read_bytes())
    assert ingest_file(copy, TELCO).data_version == first, "version is content, not path"
    lines = telco_csv.read_text().splitlines()
    _corrupt(lines, 5, lines[0].split(",").index("MonthlyCharges"), "42.42")
    changed = tmp_path / "changed.csv"
    changed.write_text("\n".join(lines) + "\n")
    assert ingest_file(changed, TELCO).data_version != first


def test_parquet_input_gives_the_same_snapshot(telco_csv: Path, home: Path, tmp_path: Path):
    parquet = tmp_path / "telco.parquet"
    pl.read_csv(telco_csv, infer_schema=False).write_parquet(parquet)
    from_csv = ingest_file(telco_csv, TELCO)
    from_parquet = ingest_file(parquet, TELCO)
    assert from_parquet.rows_accepted == 7043
    assert from_parquet.data_version == from_csv.data_version


def test_quality_thresholds_are_reported(telco_csv: Path, home: Path, tmp_path: Path) -> None:
    lines = telco_csv.read_text().splitlines()
    for i in range(2, 40):
        _corrupt(lines, i, lines[0].split(",").index("Contract"), "Weekly")
    path = tmp_path / "many_bad.csv"
    path.write_text("\n".join(lines) + "\n")
    result = ingest_file(path, TELCO, options=IngestOptions(max_quarantine_share=0.001))
    assert not result.quality_passed
    assert any("quarantined" in f for f in result.quality_failures)
    report = json.loads(result.report.with_suffix(".json").read_text())
    assert report["consistency"]["domain_violations"] == 38
    assert report["completeness"]["missing_share"]["TotalCharges"] == pytest.approx(11 / 7043)
    assert report["thresholds"] == {
        "max_missing_share": 0.2, "max_quarantine_share": 0.001,
        "max_duplicate_share": 0.01, "max_staleness_hours": None,
    }  # fmt: skip


def test_ingest_file_reads_with_the_options_given(telco_csv: Path, home: Path, tmp_path: Path):
    """Training and the flow call the same ingest_file: a delimiter reaches the reader."""
    path = tmp_path / "semicolons.csv"
    pl.read_csv(telco_csv, infer_schema=False).write_csv(path, separator=";")
    with pytest.raises(DataFileError, match="wrong delimiter"):
        ingest_file(path, TELCO)
    result = ingest_file(path, TELCO, options=IngestOptions(delimiter=";"))
    assert result.rows_accepted == 7043
    assert result.data_version == ingest_file(telco_csv, TELCO).data_version


def test_unknown_extra_columns_can_be_dropped(telco_csv: Path, home: Path, tmp_path: Path):
    frame = pl.read_csv(telco_csv, infer_schema=False).with_columns(pl.lit("x").alias("note"))
    path = tmp_path / "extra.csv"
    frame.write_csv(path)
    with pytest.raises(DataFileError, match="unexpected extra columns: note"):
        ingest_file(path, TELCO)
    result = ingest_file(path, TELCO, options=IngestOptions(extra_columns="drop"))
    assert result.rows_accepted == 7043 and "note" not in result.accepted.columns


def test_field_counts_see_blank_short_long_and_quoted_lines(tmp_path: Path) -> None:
    from tasks.ingest.read import _field_counts

    plain = b"a,b,c\r\n1,2,3\r\n4,5\r\n\r\n6,7,8,9\r\n10,11,12"
    assert _field_counts(plain, ",", "utf-8").to_list() == [3, 2, 0, 4, 3]
    path = tmp_path / "quoted.csv"
    path.write_bytes(b'a,b,c\n"x,y",2,3\n"p,q",2\n')
    assert _field_counts(path, ",", "utf-8").to_list() == [3, 2]
