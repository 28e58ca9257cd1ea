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
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

NULL_TOKENS = ("", "?", "NA", "N/A", "n/a", "na", "NaN", "nan", "null", "NULL", "None", "-")
MAX_CATEGORIES = 50  # more distinct values than this: free text, not a category
MAX_CATEGORY_SHARE = 0.5  # distinct/rows above this: an identifier, not a category
HEADROOM = 0.5  # widen observed numeric ranges by this share of their span on each side
MAX_CLASSES = 20  # an integer target with at most this many distinct values is a class label
TASKS = ("binary", "multiclass", "regression")


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
    classes: list[Any] | None = None
    task_reason: str = ""
    delimiter: str = ","

    def summary(self) -> dict[str, Any]:
        return {
            "rows_columns": len(self.columns),
            "target": self.target,
            "task": self.task,
            "task_reason": self.task_reason,
            "positive_class": self.positive_class,
            "classes": self.classes,
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
    return float(f"{(math.ceil(x / mag) if up else math.floor(x / mag)) * mag:.12g}")


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
        if is_int:  # whole bounds for whole numbers (a service's integer field needs them)
            lo_b, hi_b = float(math.floor(lo_b)), float(math.ceil(hi_b))
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


def _positive_class(values: list[Any]) -> Any:
    for guess in ("1", "Yes", "yes", "Y", "True", "true", "positive", "pos"):
        for value in values:
            if str(value) == guess:
                return value
    return sorted(values)[-1]


@dataclass(frozen=True)
class TargetDecision:
    """The task inferred from the target's present values (missing markers left out), and why."""

    task: str
    positive_class: Any
    classes: list[Any] | None
    reason: str


def decide_task(
    values: pl.Series,
    column: InferredColumn,
    markers: list[str],
    *,
    task: str | None = None,
    positive_class: str | None = None,
) -> TargetDecision:
    """Binary for two distinct values, multiclass for a few integer or text values, regression
    for other numbers; ``task`` and ``positive_class`` override the guess."""
    from tasks.ingest.table import DataFileError

    clean = values.str.strip_chars()
    present = clean.filter(clean.is_not_null() & ~clean.is_in(markers))
    numeric = column.kind in ("int", "float")
    typed = present.cast(pl.Float64) if numeric else present
    distinct = sorted(typed.unique().to_list())
    integral = numeric and all(float(v).is_integer() for v in distinct)
    if integral and column.kind == "int":
        distinct = [int(v) for v in distinct]
    n, k = values.len(), len(distinct)
    missing = n - present.len()
    shown = ", ".join(repr(v) for v in distinct[:5]) + (", ..." if k > 5 else "")
    facts = (
        f"{k} distinct value{'s' if k != 1 else ''} besides missing markers ({shown}); "
        f"{missing} of {n} rows ({missing / max(n, 1):.1%}) have no label"
        + (" and are quarantined at ingest" if missing else "")
    )
    if task is None:
        if k == 2:
            task, rule = "binary", "two distinct values"
        elif integral and k <= MAX_CLASSES:
            task, rule = "multiclass", f"integer values, at most {MAX_CLASSES} distinct"
        elif numeric:
            task, rule = "regression", "numbers with more than two distinct values"
        elif k <= MAX_CATEGORIES:
            task, rule = "multiclass", f"text with at most {MAX_CATEGORIES} distinct values"
        else:
            raise DataFileError(
                f"target {column.name!r} is neither a class label nor a number ({facts}); "
                "pass --task to say which"
            )
        facts += "; override with --task binary|multiclass|regression"
    else:
        rule = f"as --task {task} says"
    problem = _task_problem(task, k, numeric, integral)
    if problem:
        raise DataFileError(f"target {column.name!r} cannot be {task}: {problem} ({facts})")
    positive = None
    if task == "binary":
        positive = _positive_class(distinct)
        if positive_class is not None:
            match = [v for v in distinct if str(v) == positive_class]
            if not match:
                raise DataFileError(
                    f"--positive-class {positive_class!r} is not a value of {column.name!r} "
                    f"(values: {shown})"
                )
            positive = match[0]
    classes = distinct if task in ("binary", "multiclass") else None
    return TargetDecision(task, positive, classes, f"{task} ({rule}): {facts}")


def _task_problem(task: str, k: int, numeric: bool, integral: bool) -> str | None:
    if task not in TASKS:
        return f"the task is one of {', '.join(TASKS)}"
    if k < 2:
        return "a label needs at least two distinct values"
    if task == "binary" and k != 2:
        return "a binary label has exactly two distinct values"
    if task == "multiclass" and (k > MAX_CATEGORIES or (numeric and not integral)):
        return f"a class label has at most {MAX_CATEGORIES} distinct values, integers or text"
    if task == "regression" and not numeric:
        return "a regression target is a number"
    return None


def infer_schema(
    path: Path,
    *,
    target: str,
    id_column: str | None = None,
    name: str | None = None,
    event_time: str | None = None,
    delimiter: str = ",",
    task: str | None = None,
    positive_class: str | None = None,
) -> InferredSchema:
    """Infer a contract from ``path``. The target and id must be columns of the file;
    ``task`` and ``positive_class`` override what the target's values suggest."""
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
    decision = decide_task(frame[target], tgt, markers, task=task, positive_class=positive_class)
    if decision.classes is not None:  # a label: its contract is its classes, typed
        if tgt.kind not in ("int", "float"):
            tgt.kind = "category"
        tgt.categories, tgt.min_value, tgt.max_value = decision.classes, None, None
    ignore = [
        c.name for c in columns if c.kind == "text" and c.name not in (id_column, target)
    ]  # free text is kept in snapshots but is not a model feature
    stem = name or re.sub(r"[^a-z0-9_]", "_", path.stem.lower()).strip("_") or "dataset"
    if not re.match(r"^[a-z_][a-z0-9_]*$", stem):
        stem = f"ds_{stem}"
    return InferredSchema(
        stem, target, decision.task, decision.positive_class, id_column, event_time, markers,
        columns, ignore, str(path),
        classes=decision.classes if decision.task == "multiclass" else None,
        task_reason=decision.reason, delimiter=delimiter,
    )  # fmt: skip


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
        "",
        *textwrap.wrap("Task " + schema.task_reason.replace(chr(34) * 3, "'"), 96),
        '"""',
        "",
        "# ruff: noqa: E501  (generated: one field per line, however long)",
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
        *([f"    classes={tuple(schema.classes)!r},"] if schema.classes else []),
        f"    id_column={schema.id_column!r},",
        f"    event_time={schema.event_time!r},",
        f"    ignore={tuple(schema.ignore)!r},",
        f"    null_markers={tuple(schema.null_markers)!r},",
        *([f"    delimiter={schema.delimiter!r},"] if schema.delimiter != "," else []),
        "    extras={",
        f"        'source': {schema.source!r},",
        *(_BUSINESS_VALUE_HELP if schema.task == "binary" else []),
        "    },",
        ")",
        "",
    ]
    return "\n".join(lines)


_BUSINESS_VALUE_HELP = [
    "        # Business value of acting on a flagged row (binary tasks). Without all three,",
    "        # training picks the F1-optimal threshold on the validation split and the model",
    "        # card says so. Set them here (uncomment) or pass --value-retained, --offer-cost",
    "        # and --offer-success-rate to `driftloop train`:",
    "        # 'value_retained': 100.0,  # what a correctly flagged row is worth when saved",
    "        # 'offer_cost': 10.0,  # what acting on one flagged row costs",
    "        # 'offer_success_rate': 0.3,  # share of correctly flagged rows the action saves",
]


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
