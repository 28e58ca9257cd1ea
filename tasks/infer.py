"""Schema inference: write a dataset module (pandera contract + metadata) from a data file.

The result is a starting point a person reviews, not a verdict: types from what parses,
nullability from what is missing, numeric ranges widened by a headroom so tomorrow's data is
not quarantined for being a little larger, categorical domains for low-cardinality text, and
the null tokens actually found in the file.
"""

from __future__ import annotations

import keyword
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

NULL_TOKENS = ("", "?", "NA", "N/A", "n/a", "na", "NaN", "nan", "null", "NULL", "None", "-")
MAX_CATEGORIES = 50  # more distinct values than this: free text, not a category
MAX_CATEGORY_SHARE = 0.5  # distinct/rows above this: an identifier, not a category
HEADROOM = 0.5  # widen observed numeric ranges by this share of their span on each side


@dataclass
class InferredColumn:
    name: str
    kind: str  # int | float | bool | datetime | category | text
    nullable: bool
    categories: list[str] | None = None
    min_value: float | None = None
    max_value: float | None = None


@dataclass
class InferredSchema:
    name: str
    target: str
    task: str
    positive_class: Any
    id_column: str | None
    event_time: str | None
    null_markers: list[str]
    columns: list[InferredColumn]
    ignore: list[str] = field(default_factory=list)
    source: str = ""

    def summary(self) -> dict[str, Any]:
        return {
            "rows_columns": len(self.columns),
            "target": self.target,
            "task": self.task,
            "positive_class": self.positive_class,
            "null_markers": self.null_markers,
            "ignored": self.ignore,
            "columns": {c.name: c.kind for c in self.columns},
        }


def _read_text(path: Path, delimiter: str) -> pl.DataFrame:
    from tasks.ingest.table import DataFileError

    if not path.exists():
        raise DataFileError(f"file not found: {path}")
    if path.suffix.lower() in (".parquet", ".pq"):
        return pl.read_parquet(path).select(pl.all().cast(pl.String))
    try:
        return pl.read_csv(path, separator=delimiter, infer_schema=False)
    except pl.exceptions.NoDataError:
        raise DataFileError(f"file is empty: {path}") from None


def _nice(x: float, up: bool) -> float:
    """Round a bound outward to 2 significant digits, so the module reads well."""
    if x == 0 or not math.isfinite(x):
        return 0.0
    mag = 10 ** (math.floor(math.log10(abs(x))) - 1)
    return (math.ceil(x / mag) if up else math.floor(x / mag)) * mag


def _infer_column(name: str, values: pl.Series, markers: list[str]) -> InferredColumn:
    clean = values.str.strip_chars()
    clean = pl.select(pl.when(clean.is_in(markers)).then(None).otherwise(clean)).to_series()
    present = clean.drop_nulls()
    nullable = clean.null_count() > 0
    if present.len() == 0:
        return InferredColumn(name, "text", True)
    as_float = present.cast(pl.Float64, strict=False)
    # ingest takes no inf/nan as a number: a column holding one is not numeric
    if as_float.null_count() == 0 and bool(as_float.is_finite().all()):
        lo, hi = float(as_float.min()), float(as_float.max())
        span = (hi - lo) or max(abs(hi), 1.0)
        is_int = (
            bool((as_float == as_float.round(0)).all())
            and "." not in "".join(present.head(1000).to_list())
            and max(abs(lo), abs(hi)) < 2.0**63  # beyond Int64, ingest could not parse it
        )
        lo_b = 0.0 if lo >= 0 and lo - HEADROOM * span < 0 else _nice(lo - HEADROOM * span, False)
        hi_b = _nice(hi + HEADROOM * span, True)
        return InferredColumn(name, "int" if is_int else "float", nullable, None, lo_b, hi_b)
    try:
        as_dt = present.str.to_datetime(strict=False)
    except pl.exceptions.ComputeError:  # no datetime format fits
        as_dt = None
    if as_dt is not None and as_dt.null_count() == 0:
        return InferredColumn(name, "datetime", nullable)
    n_unique = present.n_unique()
    if n_unique <= MAX_CATEGORIES and n_unique / present.len() <= MAX_CATEGORY_SHARE:
        return InferredColumn(name, "category", nullable, sorted(present.unique().to_list()))
    return InferredColumn(name, "text", nullable)


def _positive_class(values: list[str]) -> str:
    for guess in ("1", "Yes", "yes", "Y", "True", "true", "positive", "pos"):
        if guess in values:
            return guess
    return sorted(values)[-1]


def infer_schema(
    path: Path,
    *,
    target: str,
    id_column: str | None = None,
    name: str | None = None,
    event_time: str | None = None,
    delimiter: str = ",",
) -> InferredSchema:
    """Infer a contract from ``path``. The target and id must be columns of the file."""
    from tasks.ingest.table import DataFileError

    frame = _read_text(path, delimiter)
    for role, col in (("target", target), ("id", id_column), ("event time", event_time)):
        if col is not None and col not in frame.columns:
            raise DataFileError(f"{role} column {col!r} is not in {path} (has: {frame.columns})")
    found = {
        tok
        for tok in NULL_TOKENS
        if frame.select(pl.any_horizontal(pl.all().str.strip_chars() == tok)).to_series().any()
    }
    markers = sorted(found | {""})
    columns = [_infer_column(c, frame[c], markers) for c in frame.columns]
    by_name = {c.name: c for c in columns}
    if id_column:  # an identifier is text: no domain, no range (ids are not measurements)
        ident = by_name[id_column]
        ident.kind, ident.categories, ident.min_value, ident.max_value = "text", None, None, None
    tgt = by_name[target]
    if tgt.kind == "category" and tgt.categories and len(tgt.categories) == 2:
        task, positive = "binary", _positive_class(tgt.categories)
    elif tgt.kind in ("int", "float") and frame[target].n_unique() <= 2:
        task, positive = "binary", 1
        tgt.kind = "int"
    elif tgt.kind in ("int", "float"):
        task, positive = "regression", None
    else:
        raise DataFileError(
            f"target {target!r} is neither binary nor numeric "
            f"({frame[target].n_unique()} distinct values)"
        )
    if tgt.kind in ("int", "float") and task == "binary":
        tgt.min_value, tgt.max_value, tgt.categories = None, None, None
    ignore = [
        c.name for c in columns if c.kind == "text" and c.name not in (id_column, target)
    ]  # free text is kept in snapshots but is not a model feature
    stem = name or re.sub(r"[^a-z0-9_]", "_", path.stem.lower()).strip("_") or "dataset"
    if not re.match(r"^[a-z_][a-z0-9_]*$", stem):
        stem = f"ds_{stem}"
    return InferredSchema(
        stem, target, task, positive, id_column, event_time, markers, columns, ignore, str(path)
    )


_TYPES = {"int": "pl.Int64", "float": "pl.Float64", "bool": "pl.Boolean", "text": "str"}
_TYPES |= {"category": "str", "datetime": 'pl.Datetime(time_unit="us")'}


def _identifier(col: str, used: set[str]) -> str:
    ident = re.sub(r"\W", "_", col)
    if not ident or ident[0].isdigit() or keyword.iskeyword(ident):
        ident = f"c_{ident}"
    while ident in used:
        ident += "_"
    used.add(ident)
    return ident


def render_module(schema: InferredSchema) -> str:
    """Python source of the dataset module."""
    cls = "".join(p.capitalize() for p in schema.name.split("_")) + "Record"
    used: set[str] = set()
    lines = [
        f'"""Dataset {schema.name!r}: inferred by `driftloop schema infer` from {schema.source}.',
        "",
        "Review it: ranges carry headroom, categories are what the file showed.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "import pandera.polars as pa",
        "import polars as pl",
        "",
        "from schemas.base import DatasetSpec",
        "",
        "",
        f"class {cls}(pa.DataFrameModel):",
        f'    """One row of {schema.name}."""',
        "",
    ]
    for col in schema.columns:
        args = []
        if col.categories is not None:
            args.append(f"isin={col.categories!r}")
        if col.min_value is not None:
            args.append(f"ge={col.min_value!r}")
        if col.max_value is not None:
            args.append(f"le={col.max_value!r}")
        if col.nullable and col.name != schema.target:
            args.append("nullable=True")
        if col.name == schema.id_column:
            args.append("nullable=False")
        ident = _identifier(col.name, used)
        if ident != col.name:
            args.append(f"alias={col.name!r}")
        lines.append(f"    {ident}: {_TYPES[col.kind]} = pa.Field({', '.join(args)})")
    lines += [
        "",
        "    class Config:",
        "        strict = True",
        "",
        "",
        "DATASET = DatasetSpec(",
        f"    name={schema.name!r},",
        f"    model={cls},",
        f"    target={schema.target!r},",
        f"    task={schema.task!r},",
        f"    positive_class={schema.positive_class!r},",
        f"    id_column={schema.id_column!r},",
        f"    event_time={schema.event_time!r},",
        f"    ignore={tuple(schema.ignore)!r},",
        f"    null_markers={tuple(schema.null_markers)!r},",
        f"    extras={{'source': {schema.source!r}}},",
        ")",
        "",
    ]
    return "\n".join(lines)


def write_schema_module(
    schema: InferredSchema, out_dir: Path | None = None, force: bool = False
) -> Path:
    """Write ``<out_dir>/<name>.py`` (default: the project's schemas/ folder)."""
    out_dir = out_dir or Path(__file__).resolve().parents[1] / "schemas"
    path = Path(out_dir) / f"{schema.name}.py"
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_module(schema))
    return path
