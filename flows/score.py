"""Score flow: a file of records in, scores out, through the service's own scoring path."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from schemas import load_dataset
from tasks import scoring
from tasks.artifacts import score as artifacts
from tasks.settings import get_settings


class ScoreConfig(BaseModel):
    """One batch-scoring run (nightly jobs override fields in prefect.yaml)."""

    path: str = Field(description="CSV or Parquet file of records to score.")
    out: str = Field(description="Where to write the scores (.parquet or .csv).")
    dataset: str = "telco"
    model: str = Field("champion", description="Alias (champion|challenger) or model tag.")
    shadow: bool = Field(False, description="Also score with the challenger, when there is one.")


# no cache key: Prefect would hash the inputs (every row of the table) for steps never cached
load_scoring_models = task(
    scoring.load_scoring_models, name="load_scoring_models", cache_policy=NO_CACHE, retries=1
)
score_table = task(scoring.score_table, name="score_table", cache_policy=NO_CACHE)
write_outputs = task(scoring.write_outputs, name="write_outputs", cache_policy=NO_CACHE, retries=2)


@flow(name="score", log_prints=True)
def score(config: ScoreConfig) -> dict[str, Any]:
    """Load models -> read -> validate + score (as the service does) -> write scores, rejects."""
    started = time.perf_counter()
    settings = get_settings().apply_env()
    dataset = load_dataset(config.dataset)
    models = load_scoring_models(
        dataset=dataset, model=config.model, shadow=config.shadow, settings=settings
    )
    raw = scoring.read_input(path=Path(config.path), delimiter=dataset.delimiter)
    scored, errors = score_table(
        raw=raw, dataset=dataset, model=models.champion, challenger=models.challenger
    )
    result = write_outputs(
        scored=scored, errors=errors, out=Path(config.out), models=models,
        rows=raw.height, started=started,
    )  # fmt: skip
    artifacts.publish_score(result=result, scores=scored["score"], model=models.champion)
    return result.to_dict()
