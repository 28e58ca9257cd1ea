"""A full disk under the state directory (a small tmpfs mounted as DRIFTLOOP_HOME).

ingest, train and promote answer with one line saying the disk is full and exit non-zero;
the snapshots, models, alias index and prediction log written before are intact. The
prediction log refuses to acknowledge what it cannot write, and catches up once there is room.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from bentos.runtime import logged
from tasks import registry
from tasks.buffered_log import BufferedLog
from tasks.io import disk_full
from tasks.settings import Settings
from tests.reliability.kit import can_mount, figures, fill, small_disk
from tests.support.homes import tiny_champion_home
from tests.support.models import tiny_models

pytestmark = pytest.mark.skipif(not can_mount(), reason="mounting a tmpfs needs root")


def _use_home(monkeypatch: pytest.MonkeyPatch, home: Path, min_free_mb: int = 0) -> Settings:
    settings = Settings(home=home)
    for key, value in settings.library_env().items():
        if key != "PREFECT_HOME":  # the session's Prefect server keeps its own home
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("DRIFTLOOP_MIN_FREE_MB", str(min_free_mb))
    return settings


def _cli(*args: str):
    from driftloop.cli import build_app

    return CliRunner().invoke(build_app(), list(args))


def _says_disk_full(result) -> bool:
    """Exit non-zero, our last stderr line names the full disk, and no traceback of ours."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return (
        result.exit_code != 0
        and bool(lines)
        and lines[-1].startswith("error: the disk holding")
        and "is full" in lines[-1]
        and "intact" in lines[-1]
    )


def _state(settings: Settings) -> dict[str, bytes]:
    """Every file of the state that must survive (temp files excluded: none may be left)."""
    keep = [settings.snapshots_dir, settings.quarantine_dir, settings.models_dir]
    return {str(p): p.read_bytes() for d in keep if d.exists()
            for p in sorted(d.rglob("*")) if p.is_file()}  # fmt: skip


def _temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*.tmp")]


@pytest.mark.timeout(240)
def test_ingest_on_a_full_disk(prefect_harness, monkeypatch, telco_csv: Path, tmp_path: Path):
    other = tmp_path / "other.csv"
    pl.read_csv(telco_csv, infer_schema=False).head(3000).write_csv(other)
    with small_disk(48) as disk:
        settings = _use_home(monkeypatch, disk / "home")
        first = _cli("ingest", str(telco_csv), "--dataset", "telco", "--json")
        assert first.exit_code == 0, first.output
        before = _state(settings)
        fill(disk)
        full = _cli("ingest", str(other), "--dataset", "telco", "--json")
        assert _says_disk_full(full), full.stderr[-2000:]
        assert _state(settings) == before and not _temp_files(disk)
        for snap in settings.snapshots_dir.glob("*.parquet"):
            pl.read_parquet(snap)  # whole
        monkeypatch.setenv("DRIFTLOOP_MIN_FREE_MB", "64")  # the default: refused up front
        refused = _cli("ingest", str(other), "--dataset", "telco")
        assert _says_disk_full(refused) and "Traceback" not in refused.stderr
        figures("full disk: ingest", exit_code=full.exit_code, files_kept=len(before),
                files_changed=0, temp_files_left=0)  # fmt: skip


@pytest.mark.timeout(300)
def test_train_and_promote_on_a_full_disk(prefect_harness, monkeypatch, telco_csv: Path):
    with small_disk(48) as disk:
        settings = _use_home(monkeypatch, disk / "home")
        home = tiny_champion_home(settings, tiny_models())
        index = settings.alias_index.read_bytes()
        before = _state(settings)
        fill(disk)
        promote = _cli("models", "promote", "telco", home.other)
        assert _says_disk_full(promote), promote.stderr[-2000:]
        train = _cli("train", "--data", str(telco_csv), "--trials", "1", "--json")
        assert _says_disk_full(train), train.stderr[-2000:]
        assert settings.alias_index.read_bytes() == index
        assert _state(settings) == before and not _temp_files(disk)
        assert registry.get_alias("telco", registry.CHAMPION, settings) == home.champion
        registry.load_model(home.champion, settings)  # still loads, checksum and all
        figures("full disk: train and promote", promote_exit=promote.exit_code,
                train_exit=train.exit_code, alias_index_unchanged=True,
                models_loadable=len(registry.list_models("telco", settings)))  # fmt: skip


@pytest.mark.timeout(120)
def test_prediction_log_on_a_full_disk_acknowledges_nothing_it_cannot_keep():
    def frame(entries: list[list[str]]) -> pl.DataFrame:
        return pl.DataFrame({"request_id": [i for e in entries for i in e],
                             "pad": ["x" * 200 for e in entries for _ in e]})  # fmt: skip

    with small_disk(8) as disk:
        log = BufferedLog(disk / "predictions", frame, prefix="p", flush_seconds=3600).start()
        try:
            log.append([f"a{i}" for i in range(100)], 100).result(timeout=10)
            log.flush()
            kept = sorted(p.name for p in (disk / "predictions").glob("*.parquet"))
            filler = fill(disk)
            refused = 0
            for i in range(20):
                done = log.append([f"b{i}-{j}" for j in range(500)], 500)
                exc = done.exception(timeout=10)
                if exc is not None:
                    assert disk_full(exc)
                    assert asyncio.run(logged(done)) == "the disk is full"
                    refused += 1
            assert refused > 0
            files = sorted(p.name for p in (disk / "predictions").glob("*.parquet"))
            assert files == kept  # the earlier files untouched, nothing half-written
            os.unlink(filler)  # room again: the kept rows go out with the next write
            log.append(["c"], 1).result(timeout=10)
            log.flush()
        finally:
            log.close()
        ids = set(pl.read_parquet(list((disk / "predictions").glob("*.parquet")))["request_id"])
        assert {f"a{i}" for i in range(100)} | {"c"} <= ids
        figures(
            "full disk: prediction log",
            writes_refused=refused,
            earlier_files_intact=len(kept),
            rows_kept_and_written_later=len(ids) - 101,
        )
