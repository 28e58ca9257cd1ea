"""Scoring: the one code path from validated records to scores, online and in batch.

The service (``bentos/service.py``) and batch scoring (``driftloop score``, ``flows/score.py``)
both validate with the request model generated from the contract (``schemas.requests``), both
build features with ``tasks.features`` and both call :func:`score_inputs`.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
from pydantic import TypeAdapter, ValidationError

from schemas.base import DatasetSpec
from schemas.requests import RequestModels, frame_errors, records_to_frame, request_models
from tasks.ingest.parse import parse_text
from tasks.ingest.snapshot import write_table
from tasks.predict import score_frame
from tasks.predlog import ScoredBatch, prediction_frame
from tasks.registry import LoadedModel
from tasks.settings import Settings, get_settings

READ_CHUNK = 50_000  # rows validated at once in batch scoring (bounds memory)


def decide(scores: np.ndarray, model: LoadedModel) -> np.ndarray | None:
    """Scores at or above the model's threshold (None for a regression model)."""
    if model.metadata.get("task", "binary") == "regression":
        return None
    return scores >= model.threshold


def score_inputs(
    inputs: pl.DataFrame,
    model: LoadedModel,
    id_column: str | None,
    started: float | None = None,
) -> ScoredBatch:
    """Score validated inputs; the result is both the response and the log entry."""
    started = time.perf_counter() if started is None else started
    scores = score_frame(inputs, model)
    base = uuid.uuid4().hex
    n = inputs.height
    entity = inputs[id_column].cast(pl.String).to_list() if id_column in inputs.columns else None
    return ScoredBatch(
        inputs=inputs,
        request_ids=[f"{base}-{i}" for i in range(n)],
        entity_ids=entity,
        ts=datetime.now(UTC),
        model_tag=model.tag,
        scores=scores,
        decisions=decide(scores, model),
        latency_ms=(time.perf_counter() - started) * 1e3,
    )


def with_shadow(batch: ScoredBatch, challenger: LoadedModel | None) -> ScoredBatch:
    """The batch with the challenger's scores beside the champion's (nothing if no challenger)."""
    if challenger is None:
        return batch
    shadow = score_frame(batch.inputs, challenger)
    return ScoredBatch(**{**batch.__dict__, "shadow_tag": challenger.tag, "shadow_scores": shadow})


# --- batch scoring of files ---------------------------------------------------------------


@dataclass(frozen=True)
class ValidatedRows:
    valid: pl.DataFrame  # contract-typed input columns of the rows that passed
    errors: pl.DataFrame  # row, column, check, message of the rows that did not


def _typed(
    raw: pl.DataFrame, dataset: DatasetSpec, models: RequestModels
) -> tuple[pl.DataFrame, list[dict]]:
    """Text cells -> contract types with ingest's parser (null markers -> null); typed cells
    (Parquet) are cast; unparsable cells are errors."""
    missing = [c for c in models.input_columns if c not in raw.columns]
    present = raw.with_columns([pl.lit(None, pl.String).alias(c) for c in missing])
    text = {c: t for c, t in models.polars_schema.items() if present.schema[c] == pl.String}
    parsed, failures = parse_text(present, text, dataset.null_markers)
    typed = present.select(
        parsed[c] if c in text else pl.col(c).cast(dtype)
        for c, dtype in models.polars_schema.items()
    )
    errors = [
        {"row": row, "column": c, "check": "type", "message": f"not a valid {text[c]}"}
        for row, c in failures.select("row", "column").iter_rows()
    ]
    return typed, errors


def validate_rows(raw: pl.DataFrame, dataset: DatasetSpec) -> ValidatedRows:
    """Validate rows exactly as the service validates a request; split good from bad."""
    models = request_models(dataset)
    extra = [c for c in raw.columns if c not in models.input_columns and c != dataset.target]
    if extra and dataset.extra_columns == "reject":
        raise ValueError(f"columns not in the {dataset.name} contract: {', '.join(extra)}")
    typed, errors = _typed(raw, dataset, models)
    unparsable = {e["row"] for e in errors}
    adapter = TypeAdapter(models.record)
    good: list[int] = []
    records = []
    for i, row in enumerate(typed.to_dicts()):
        if i in unparsable:
            continue
        row = {k: v for k, v in row.items() if v is not None}  # absent, as in a request
        try:
            records.append(adapter.validate_python(row))
            good.append(i)
        except ValidationError as exc:
            for e in exc.errors(include_url=False):
                col = ".".join(str(p) for p in e["loc"]) or None
                errors.append({"row": i, "column": col, "check": e["type"], "message": e["msg"]})
    valid = (
        records_to_frame(records, models) if records else pl.DataFrame(schema=models.polars_schema)
    )
    for e in frame_errors(valid, models):
        errors.append(
            {"row": good[e["loc"][1]], "column": None, "check": e["type"], "message": e["msg"]}
        )
    bad_rows = {e["row"] for e in errors}
    keep = [j for j, i in enumerate(good) if i not in bad_rows]
    schema = {"row": pl.Int64, "column": pl.String, "check": pl.String, "message": pl.String}
    return ValidatedRows(valid[keep], pl.DataFrame(errors, schema=schema, orient="row"))


def read_input(path: Path) -> pl.DataFrame:
    """A CSV (every cell as text) or Parquet file to score."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix.lower() in (".parquet", ".pq"):
        return pl.read_parquet(path)
    return pl.read_csv(path, infer_schema=False)


@dataclass(frozen=True)
class ScoreResult:
    model_tag: str
    rows: int
    scored: int
    rejected: int
    out: Path
    rejects: Path | None
    shadow_tag: str | None
    seconds: float

    def to_dict(self) -> dict:
        return {k: str(v) if isinstance(v, Path) else v for k, v in self.__dict__.items()}


def score_table(
    raw: pl.DataFrame,
    dataset: DatasetSpec,
    model: LoadedModel,
    challenger: LoadedModel | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(prediction-log shaped scores of the valid rows, errors of the invalid rows)."""
    started = time.perf_counter()
    checked = validate_rows(raw, dataset)
    batch = with_shadow(score_inputs(checked.valid, model, dataset.id_column, started), challenger)
    return prediction_frame(batch), checked.errors


@dataclass(frozen=True)
class ScoringModels:
    champion: LoadedModel
    challenger: LoadedModel | None


def load_scoring_models(
    dataset: DatasetSpec, model: str = "champion", shadow: bool = False, settings=None
) -> ScoringModels:
    """The model to score with (alias or tag) and, with ``shadow``, the challenger if any."""
    from tasks import registry

    aliases = (registry.CHAMPION, registry.CHALLENGER)
    ref = f"{dataset.name}:{model}" if model in aliases else model
    champion = registry.load_model(ref, settings)
    challenger = None
    if shadow and registry.get_alias(dataset.name, registry.CHALLENGER, settings):
        challenger = registry.load_model(f"{dataset.name}:{registry.CHALLENGER}", settings)
    return ScoringModels(champion, challenger)


def write_outputs(
    scored: pl.DataFrame,
    errors: pl.DataFrame,
    out: Path,
    models: ScoringModels,
    rows: int,
    started: float,
) -> ScoreResult:
    """Write the scores (and the refused rows beside them); say what was done."""
    write_table(scored, out)
    rejects = None
    if errors.height:
        rejects = write_table(errors, Path(out).with_suffix(".rejects.parquet"))
    return ScoreResult(
        model_tag=models.champion.tag,
        rows=rows,
        scored=scored.height,
        rejected=errors["row"].n_unique() if errors.height else 0,
        out=Path(out),
        rejects=rejects,
        shadow_tag=models.challenger.tag if models.challenger else None,
        seconds=round(time.perf_counter() - started, 3),
    )


def score_file(
    path: Path,
    out: Path,
    *,
    dataset: str,
    model: str = "champion",
    shadow: bool = False,
    settings: Settings | None = None,
) -> ScoreResult:
    """Score a CSV/Parquet file; write scores to ``out`` and refused rows beside it.

    ``model`` is an alias (``champion``/``challenger``) or a tag. Refused rows (with the field
    and rule that refused them) go to ``<out stem>.rejects.parquet``; none is silently dropped.
    """
    from schemas import load_dataset

    started = time.perf_counter()
    settings = settings or get_settings()
    spec = load_dataset(dataset)
    models = load_scoring_models(spec, model, shadow, settings)
    raw = read_input(path)
    scored, errors = score_table(raw, spec, models.champion, models.challenger)
    return write_outputs(scored, errors, out, models, raw.height, started)
