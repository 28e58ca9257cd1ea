"""`driftloop ingest` and `driftloop schema infer` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from driftloop.cli import build_app


def _run(*args: str):
    return CliRunner().invoke(build_app(), list(args))


def _telco_variant(telco_csv: Path, tmp_path: Path, name: str, edit) -> Path:
    path = tmp_path / name
    path.write_bytes(edit(telco_csv.read_bytes()))
    return path


FILE_FAILURES = {
    "missing": (lambda b: None, "file not found"),
    "empty": (lambda b: b"", "file is empty"),
    "header_only": (lambda b: b.split(b"\n")[0] + b"\n", "header but no data rows"),
    "semicolons": (lambda b: b.replace(b",", b";"), "wrong delimiter"),
    "latin1": (lambda b: b.replace(b"Female", "F\xe9male".encode("latin-1")), "not valid utf-8"),
    "renamed": (lambda b: b.replace(b"tenure", b"tenure_months", 1), "missing required columns"),
    "dropped_col": (
        lambda b: b"\n".join(
            b",".join(x for i, x in enumerate(ln.split(b",")) if i != 5) for ln in b.split(b"\n")
        ),
        "missing required columns: tenure",
    ),
    "extra_col": (
        lambda b: b"\n".join(
            (ln.rstrip(b"\r") + (b",note" if i == 0 else b",x")) if ln else ln
            for i, ln in enumerate(b.split(b"\n"))
        ),
        "unexpected extra columns: note",
    ),
    "no_target": (
        lambda b: b.replace(b",Churn", b",Label", 1),
        "target column 'Churn' is absent "
        "(dataset 'telco'; another dataset's file needs --dataset NAME)",
    ),  # fmt: skip
}


@pytest.mark.parametrize("case", sorted(FILE_FAILURES))
def test_file_level_failures_are_one_clear_line(
    case: str, telco_csv: Path, tmp_path: Path, home: Path
):
    edit, message = FILE_FAILURES[case]
    data = edit(telco_csv.read_bytes())
    path = tmp_path / f"{case}.csv"
    if data is not None:
        path.write_bytes(data)
    result = _run("ingest", str(path), "--dataset", "telco", "--json")
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert message.lower() in err.lower(), err
    assert "Traceback" not in result.output
    assert not (home / "data" / "snapshots").exists() or not any(
        (home / "data" / "snapshots").iterdir()
    ), "nothing is written for a file that cannot be ingested"


def test_renamed_column_gets_a_hint(telco_csv: Path, tmp_path: Path, home: Path) -> None:
    path = _telco_variant(
        telco_csv, tmp_path, "r.csv", lambda b: b.replace(b"tenure", b"Tenure", 1)
    )
    result = _run("ingest", str(path), "--dataset", "telco")
    assert result.exit_code == 1
    assert "'Tenure'" in result.stderr and "renamed?" in result.stderr


def test_unknown_dataset(telco_csv: Path, home: Path) -> None:
    result = _run("ingest", str(telco_csv), "--dataset", "nope")
    assert result.exit_code == 1
    assert "unknown dataset 'nope'" in result.stderr and "schema infer" in result.stderr


def test_ingest_json_through_the_flow(telco_csv: Path, home: Path, prefect_harness) -> None:
    result = _run("ingest", str(telco_csv), "--dataset", "telco", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # exactly one JSON object, nothing else on stdout
    assert data["rows_in"] == 7043 == data["rows_accepted"] + data["rows_quarantined"]
    for key in ("data_version", "snapshot", "quarantine", "report"):
        assert data[key]
    assert Path(data["snapshot"]).is_relative_to(home.resolve())
    assert Path(data["report"]).exists()


def test_quality_gate_failure_exits_3_with_report(
    telco_csv: Path, tmp_path: Path, home: Path, prefect_harness
) -> None:
    frame = pl.read_csv(telco_csv, infer_schema=False)
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()) < 500).then(pl.lit("Weekly")).otherwise("Contract")
        .alias("Contract")
    )  # fmt: skip
    path = tmp_path / "weekly.csv"
    frame.write_csv(path)
    result = _run("ingest", str(path), "--dataset", "telco", "--json")
    assert result.exit_code == 3, result.output
    data = json.loads(result.stdout)
    assert data["rows_quarantined"] == 500 and not data["quality_passed"]
    assert Path(data["report"]).exists()
    assert "data quality failed" in result.stderr and "quarantined" in result.stderr


def _unseen_dataset(rows: int = 600, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    income = rng.normal(50_000, 12_000, rows).round(2).astype(str).astype(object)
    income[rng.random(rows) < 0.05] = "?"
    return pl.DataFrame(
        {
            "account": [f"A{i:05d}" for i in range(rows)],
            "age": rng.integers(18, 90, rows).astype(str),
            "income": income.astype(str),
            "plan": rng.choice(["basic", "plus", "pro"], rows),
            "region": rng.choice(["north", "south", "east", "west", "?"], rows),
            "defaulted": rng.choice(["0", "1"], rows),
        }
    )


def test_schema_infer_on_unseen_data(tmp_path: Path, home: Path) -> None:
    data = _unseen_dataset()
    src = tmp_path / "loans.csv"
    data.write_csv(src)
    out = tmp_path / "schemas_out"
    result = _run(
        "schema", "infer", str(src), "--target", "defaulted", "--id", "account",
        "--name", "loans", "--out-dir", str(out), "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["task"] == "binary" and "?" in info["null_markers"]
    module = Path(info["module"])
    assert module.exists()

    from schemas import load_dataset
    from tasks.ingest.compose import ingest_file

    spec = load_dataset(str(module))
    assert spec.columns["plan"].categories == ("basic", "plus", "pro")
    assert spec.columns["income"].nullable and spec.columns["age"].min_value is not None
    clean = ingest_file(src, spec)
    assert clean.rows_quarantined == 0 and clean.rows_accepted == 600
    assert clean.accepted["income"].null_count() > 0  # "?" read as missing

    bad = data.with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("platinum")).otherwise("plan")
        .alias("plan"),
        pl.when(pl.int_range(pl.len()) == 7).then(pl.lit("-400")).otherwise("age").alias("age"),
        pl.when(pl.int_range(pl.len()) == 9).then(pl.lit("lots")).otherwise("income")
        .alias("income"),
    )  # fmt: skip
    bad_path = tmp_path / "loans_bad.csv"
    bad.write_csv(bad_path)
    corrupted = ingest_file(bad_path, spec)
    assert corrupted.rows_quarantined == 3 and corrupted.rows_accepted == 597
    assert sorted(corrupted.quarantined["_line"].to_list()) == [5, 9, 11]


def test_schema_infer_refuses_to_overwrite(tmp_path: Path, home: Path) -> None:
    src = tmp_path / "loans.csv"
    _unseen_dataset(50).write_csv(src)
    args = ["schema", "infer", str(src), "--target", "defaulted", "--out-dir", str(tmp_path)]
    assert _run(*args).exit_code == 0
    again = _run(*args)
    assert again.exit_code == 1 and "--force" in again.stderr


def _infer(src: Path, target: str, id_col: str, name: str):
    """`driftloop schema infer` on ``src`` into its folder; the module, loaded."""
    from schemas import load_dataset

    args = ["schema", "infer", str(src), "--target", target, "--id", id_col]
    result = _run(*args, "--name", name, "--out-dir", str(src.parent), "--json")
    assert result.exit_code == 0, result.output
    return load_dataset(json.loads(result.stdout)["module"])


def test_schema_infer_with_an_integer_id(tmp_path: Path, home: Path) -> None:
    from tasks.ingest.compose import ingest_file

    data = _unseen_dataset(80).with_columns(pl.int_range(pl.len()).cast(pl.String).alias("account"))
    src = tmp_path / "ints.csv"
    data.write_csv(src)
    spec = _infer(src, "defaulted", "account", "ints")
    assert spec.columns["account"].min_value is None
    assert ingest_file(src, spec).rows_accepted == 80


def test_an_inferred_module_accepts_every_row_of_its_file(tmp_path: Path, home: Path) -> None:
    """The file the module came from passes it whole, whatever its columns hold (the benchmark
    once got an integer id with a range on a text column: a schema-level failure)."""
    rng = np.random.default_rng(3)
    rows = 3000
    income = rng.normal(50.0, 20.0, rows)
    data = pl.DataFrame(
        {
            "row_id": np.arange(rows),
            "income": pl.Series(income).set(pl.Series(rng.random(rows) < 0.01), None),
            "visits": rng.poisson(3, rows),
            "plan": rng.choice(["basic", "plus", "pro"], rows),
            "big": rng.integers(2**62, 2**63 - 1, rows),  # past float precision, within Int64
            "huge": [f"{10**20 + i}" for i in range(rows)],  # past Int64: not an integer column
            "ratio": [("inf" if i == 5 else f"{i / 7:.3f}") for i in range(rows)],
            "target": rng.choice(["No", "Yes"], rows),
        }
    )
    src = tmp_path / "synthetic.csv"
    data.write_csv(src)
    from tasks.ingest.compose import ingest_file

    ingested = ingest_file(src, _infer(src, "target", "row_id", "roundtrip"))
    assert ingested.rows_quarantined == 0, ingested.quarantined.head(3)
    assert ingested.rows_accepted == rows
    assert ingested.accepted["big"].to_list() == data["big"].to_list()  # exact, not via float


def _labelled(rows: int, labels: list[str], seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {"x": rng.normal(size=rows).round(3).astype(str), "y": rng.choice(labels, rows)}
    )


@pytest.mark.parametrize(
    ("labels", "task", "classes"),
    [
        (["0", "1", "?"], "binary", None),  # a missing marker is not a third class
        (["0", "1", "2"], "multiclass", [0, 1, 2]),
        (["cat", "dog", "emu", "NA"], "multiclass", ["cat", "dog", "emu"]),
        ([str(v) for v in range(40)], "regression", None),
    ],
)
def test_schema_infer_decides_the_task_from_present_values(
    labels: list[str], task: str, classes, tmp_path: Path, home: Path
) -> None:
    src = tmp_path / "t.csv"
    _labelled(400, labels).write_csv(src)
    args = ["schema", "infer", str(src), "--target", "y", "--out-dir", str(tmp_path), "--json"]
    info = json.loads(_run(*args).stdout)
    assert info["task"] == task and info["classes"] == classes
    assert "distinct value" in info["task_reason"] and "have no label" in info["task_reason"]


def test_schema_infer_overrides_and_missing_labels_are_quarantined(
    tmp_path: Path, home: Path
) -> None:
    from schemas import load_dataset
    from tasks.ingest.compose import ingest_file
    from tasks.ingest.validate import MISSING_LABEL

    src = tmp_path / "o.csv"
    _labelled(300, ["lo", "hi", "?"], seed=1).write_csv(src)
    base = ["schema", "infer", str(src), "--target", "y", "--out-dir", str(tmp_path), "--json"]
    info = json.loads(_run(*base, "--positive-class", "lo").stdout)
    assert info["task"] == "binary" and info["positive_class"] == "lo"
    module = Path(info["module"]).read_text()
    assert "# 'value_retained'" in module and "--offer-cost" in module  # commented, explained
    bad = _run(*base, "--force", "--positive-class", "mid")
    assert bad.exit_code == 1 and "'mid' is not a value" in bad.stderr
    wrong = _run(*base, "--force", "--task", "regression")
    assert wrong.exit_code == 1 and "cannot be regression" in wrong.stderr
    ingested = ingest_file(src, load_dataset(info["module"]))
    missing = int((pl.read_csv(src, infer_schema=False)["y"] == "?").sum())
    assert missing > 0 and ingested.rows_quarantined == missing
    assert ingested.rows_in == ingested.rows_accepted + ingested.rows_quarantined
    reasons = ingested.quarantined["_reasons"].explode().struct.field("check").unique()
    assert reasons.to_list() == [MISSING_LABEL]
    assert ingested.accepted["y"].null_count() == 0


def test_an_inferred_integer_column_has_whole_bounds_the_service_can_use(
    tmp_path: Path, home: Path
) -> None:
    """Telco's 0/1 SeniorCitizen once got le=1.5: the service's request model refused to build."""
    from pydantic import TypeAdapter, ValidationError

    from schemas import load_dataset
    from schemas.requests import request_models

    src = tmp_path / "flags.csv"
    _labelled(200, ["a", "b"]).with_columns(
        pl.Series("flag", (np.arange(200) % 2).astype(str))
    ).write_csv(src)
    args = ["schema", "infer", str(src), "--target", "y", "--out-dir", str(tmp_path), "--json"]
    spec = load_dataset(json.loads(_run(*args).stdout)["module"])
    assert spec.columns["flag"].max_value == float(int(spec.columns["flag"].max_value))
    record = TypeAdapter(request_models(spec).record)
    record.validate_python({"x": 0.5, "flag": 1})
    with pytest.raises(ValidationError):
        record.validate_python({"x": 0.5, "flag": 99})
