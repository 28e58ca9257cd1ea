"""Versioning and storage: accepted rows as Parquet named by their content hash, the
quarantine beside them, a manifest per version, and reading them back."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from schemas.base import DatasetSpec
from tasks.ingest.table import Split
from tasks.io import atomic_write, write_json

if TYPE_CHECKING:
    from tasks.settings import Settings


@dataclass(frozen=True)
class Snapshot:
    data_version: str
    path: Path
    manifest_path: Path
    quarantine_path: Path


def data_version(frame: pl.DataFrame) -> str:
    """Content hash of a frame: column names, dtypes and every value, in order.

    Stable for the same content with the same polars version (polars' row hash is not
    promised stable across polars releases; the manifest records the polars version).
    """
    h = hashlib.sha256()
    h.update(json.dumps([[c, str(t)] for c, t in frame.schema.items()]).encode())
    if frame.height:
        for seed in (0, 1):  # two 64-bit row hashes: collisions are out of reach
            h.update(frame.hash_rows(seed=seed).to_numpy().tobytes())
    h.update(str(frame.height).encode())
    return h.hexdigest()[:16]


def _write_parquet(frame: pl.DataFrame, path: Path) -> None:
    """Atomically, written straight to the temp file: no in-memory copy of the encoded Parquet."""
    atomic_write(path, lambda fh: frame.write_parquet(fh, compression="lz4"))


def save_snapshot(
    split: Split, dataset: DatasetSpec, source: Path, settings: Settings | None = None
) -> Snapshot:
    """Write the accepted rows (named by content hash), the quarantine and the manifest."""
    from tasks.settings import get_settings

    settings = settings or get_settings()
    version = data_version(split.accepted)
    snap = settings.snapshots_dir / f"{version}.parquet"
    manifest = settings.snapshots_dir / f"{version}.json"
    quarantine = settings.quarantine_dir / f"{version}.parquet"
    if not snap.exists():
        _write_parquet(split.accepted, snap)
    _write_parquet(split.quarantined, quarantine)
    info = {
        "data_version": version,
        "dataset": dataset.name,
        "schema_hash": dataset.schema_hash,
        "source": str(Path(source).resolve()),
        "rows_in": split.accepted.height + split.quarantined.height,
        "rows_accepted": split.accepted.height,
        "rows_quarantined": split.quarantined.height,
        "snapshot": str(snap),
        "quarantine": str(quarantine),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "polars": pl.__version__,
    }
    write_json(manifest, info)
    return Snapshot(version, snap, manifest, quarantine)


def load_snapshot(ref: str | Path, settings: Settings | None = None) -> pl.DataFrame:
    """A snapshot by data version or by path."""
    from tasks.settings import get_settings

    path = Path(ref)
    if not path.suffix:
        path = (settings or get_settings()).snapshots_dir / f"{ref}.parquet"
    if not path.exists():
        raise FileNotFoundError(f"no snapshot {ref!r} (looked for {path})")
    return pl.read_parquet(path)


def load_manifest(version: str, settings: Settings | None = None) -> dict[str, Any]:
    from tasks.settings import get_settings

    path = (settings or get_settings()).snapshots_dir / f"{version}.json"
    return json.loads(path.read_text())


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection");
# a plain number such as -3.5 is left as it is.
_FORMULA_START = r"^[=+\-@\t\r]"
_PLAIN_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"


def csv_inert(frame: pl.DataFrame) -> pl.DataFrame:
    """Text cells that a spreadsheet would run as a formula, prefixed with ``'`` (inert)."""
    text = [c for c, t in frame.schema.items() if t in (pl.String, pl.Categorical) or t == pl.Enum]
    return frame.with_columns(
        pl.when(
            pl.col(c).cast(pl.String).str.contains(_FORMULA_START)
            & ~pl.col(c).cast(pl.String).str.contains(_PLAIN_NUMBER)
        )
        .then(pl.lit("'") + pl.col(c).cast(pl.String))
        .otherwise(pl.col(c).cast(pl.String))
        .alias(c)
        for c in text
    )


def write_table(frame: pl.DataFrame, path: Path | str, delimiter: str = ",") -> Path:
    """Write a frame as CSV (formula-like text made inert; fields separated by ``delimiter``)
    or Parquet, by the file's suffix (atomically). Every CSV driftloop writes goes through here."""
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        atomic_write(path, lambda fh: frame.write_parquet(fh, compression="zstd"))
    else:
        atomic_write(path, lambda fh: csv_inert(frame).write_csv(fh, separator=delimiter))
    return path
