"""The CLI's promises under bad data and attackers: exit codes as the README states them, no
secret from the environment in anything a run writes, no live formula in any CSV we write."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from tasks.ingest.snapshot import csv_inert, write_table
from tests.reliability.kit import figures
from tests.support.telco import REPO

SENTINEL = "sentinel-wandb-key-9b1e77c3a5d04f"
FORMULAS = ["=1+1", "+SUM(A1:A2)", "-2+3", "@SUM(A1)", '=HYPERLINK("http://x")', "\t=1"]


def _cli(*args: str):
    from driftloop.cli import build_app

    return CliRunner().invoke(build_app(), list(args))


def _run(*args: str) -> subprocess.CompletedProcess:
    """``driftloop ARGS`` as a user runs it (its own process), on the session's Prefect."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    return subprocess.run([sys.executable, "-m", "driftloop", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def _weekly(telco_csv: Path, tmp_path: Path) -> Path:
    """Telco with 500 rows of an unknown contract: parses, then breaks the quarantine gate."""
    frame = pl.read_csv(telco_csv, infer_schema=False).with_columns(
        pl.when(pl.int_range(pl.len()) < 500).then(pl.lit("Weekly")).otherwise("Contract")
        .alias("Contract")
    )  # fmt: skip
    path = tmp_path / "weekly.csv"
    frame.write_csv(path)
    return path


@pytest.mark.timeout(300)
def test_quality_gate_exits_3_for_every_command(telco_csv, tmp_path, home, prefect_harness):
    bad = _weekly(telco_csv, tmp_path)
    codes = {
        "ingest": _run("ingest", str(bad), "--dataset", "telco", "--json"),
        "train": _run("train", "--data", str(bad), "--trials", "1", "--json"),
    }
    for name, result in codes.items():
        assert result.returncode == 3, (name, result.stderr[-1500:])
        assert result.stderr.strip().splitlines()[-1].startswith("error: "), name
        assert "Traceback" not in result.stderr, name
    bad_input = _cli("train", "--data", str(tmp_path / "missing.csv"), "--trials", "1")
    unknown = _cli("ingest", str(bad), "--dataset", "no_such_dataset")
    assert bad_input.exit_code == 1 and unknown.exit_code == 1
    figures("exit codes", quality_gate={k: v.returncode for k, v in codes.items()},
            bad_input={"train": bad_input.exit_code, "ingest": unknown.exit_code})  # fmt: skip


@pytest.mark.timeout(400)
def test_a_secret_in_the_environment_is_written_nowhere(
    telco_csv, home, prefect_harness, monkeypatch
):
    """A real train run (W&B offline, Optuna, BentoML store, Prefect server DB) with a W&B key
    and another secret in its environment: neither is in any file it wrote."""
    monkeypatch.setenv("WANDB_API_KEY", SENTINEL)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("MY_SERVICE_TOKEN", SENTINEL)
    result = _cli("train", "--data", str(telco_csv), "--trials", "2", "--json")
    assert result.exit_code == 0, result.output[-2000:]
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, PREFECT_HOME

    roots = [home, Path(PREFECT_HOME.value())]
    url = PREFECT_API_DATABASE_CONNECTION_URL.value() or ""
    if "sqlite" in url:
        roots.append(Path(url.split("///", 1)[-1]).parent)
    files = [p for r in roots if r.exists() for p in r.rglob("*") if p.is_file()]
    found = [str(p) for p in files if SENTINEL.encode() in p.read_bytes()]
    wandb_files = [p for p in files if "wandb" in p.parts]
    assert wandb_files, "the run wrote no W&B files: the search proves nothing"
    figures("secret in the environment (train)", files_searched=len(files),
            wandb_files=len(wandb_files), found=len(found))  # fmt: skip
    assert found == [], found
    assert SENTINEL not in result.output


def test_every_csv_we_write_is_inert(tmp_path: Path):
    frame = pl.DataFrame({"customerID": FORMULAS, "note": ["ok"] * len(FORMULAS),
                          "value": [-1.5, 2.0, -3.0, 4.0, 5.0, 6.0]})  # fmt: skip
    out = write_table(frame, tmp_path / "out.csv")
    cells = [c for line in out.read_text().splitlines()[1:] for c in line.split(",")]
    live = [c for c in cells if c.strip('"')[:1] in ("=", "+", "@", "\t")
            or (c.strip('"').startswith("-") and not _number(c))]  # fmt: skip
    assert live == []
    assert csv_inert(pl.DataFrame({"x": ["-3.5", "+4", "1e5"]}))["x"].to_list() == [
        "-3.5", "+4", "1e5"]  # plain numbers stay numbers  # fmt: skip
    figures("CSV injection", formulas_written=len(FORMULAS), live_cells=len(live))


def _number(cell: str) -> bool:
    try:
        float(cell.strip('"'))
    except ValueError:
        return False
    return True


def test_batch_scores_as_csv_are_inert(tmp_path: Path, champion_home):
    """Formula ids are refused by the contract (to the Parquet rejects file); the CSV of scores
    holds no live cell; and no module of ours writes CSV except through ``write_table``."""
    from tasks.scoring import score_file
    from tests.support.telco import TELCO_CSV

    rows = pl.read_csv(TELCO_CSV, infer_schema=False).head(20)
    ids = FORMULAS + rows["customerID"].to_list()[len(FORMULAS) :]
    path = tmp_path / "in.csv"
    rows.with_columns(pl.Series("customerID", ids)).write_csv(path)
    out = tmp_path / "scores.csv"
    result = score_file(path, out, dataset="telco", settings=champion_home.settings)
    cells = [c for line in out.read_text().splitlines()[1:] for c in line.split(",")]
    assert cells and not [c for c in cells if c.strip('"')[:1] in ("=", "+", "@", "\t")]
    assert result.rejects is None or str(result.rejects).endswith(".parquet")
    writers = [str(p.relative_to(REPO)) for d in ("tasks", "flows", "driftloop", "bentos")
               for p in (REPO / d).rglob("*.py") if "write_csv" in p.read_text()]  # fmt: skip
    assert writers == ["tasks/ingest/snapshot.py"], writers  # the log's COPY is binary now
