"""The score flow under a real Prefect server: same scores as the CLI path, rejects written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from flows.score import ScoreConfig, score
from tasks import registry
from tasks.features import build_features, to_matrix
from tasks.scoring import validate_rows
from tasks.settings import Settings
from tests.support.artifacts import latest_artifacts
from tests.support.models import save_tiny as save
from tests.support.models import tiny_models
from tests.support.telco import TELCO_CSV


@pytest.fixture
def scoring_home(home: Path) -> Settings:
    settings = Settings(home=home)
    settings.ensure_dirs()
    m = tiny_models()
    tag = save(m.a, m.features, settings, "a")
    registry.set_alias("telco", registry.CHAMPION, tag, settings=settings)
    return settings


def test_score_flow_scores_like_the_service(scoring_home, prefect_harness, tmp_path):
    from schemas import load_dataset

    m = tiny_models()
    raw = pl.read_csv(TELCO_CSV, infer_schema=False).slice(4000, 40)
    src = tmp_path / "batch.csv"
    pl.concat([raw, raw.head(1).with_columns(pl.lit("-5").alias("tenure"))]).write_csv(src)
    out = tmp_path / "scores.parquet"
    result = score(ScoreConfig(path=str(src), out=str(out)))
    assert (result["rows"], result["scored"], result["rejected"]) == (41, 40, 1)
    scored = pl.read_parquet(out)
    typed = validate_rows(raw, load_dataset("telco")).valid
    expected = m.a.predict(to_matrix(build_features(typed, m.features)), num_threads=1)
    np.testing.assert_allclose(scored["score"].to_numpy(), expected, rtol=0, atol=1e-9)
    assert scored["model_tag"].unique().to_list() == [result["model_tag"]]
    rejects = pl.read_parquet(result["rejects"])
    assert rejects.to_dicts()[0]["column"] == "tenure"
    # the UI: rows, the score distribution, where the output went, which model
    found = latest_artifacts("score-telco", "score-telco-output")
    body = found["score-telco"].data
    assert found["score-telco"].type == "markdown" and "# Score: 40 of 41 rows scored" in body
    assert f"Model `{result['model_tag']}`" in body and "Rejected rows: 1" in body
    s = scored["score"].to_numpy()
    assert f"| 40 | {s.mean():.4g} | {s.min():.4g} |" in body  # rows, mean, min
    assert f"{np.quantile(s, 0.5):.4g}" in body and f"{(s >= 0.5).mean():.4g}" in body
    assert found["score-telco-output"].data == f"[{out.name}]({out.resolve().as_uri()})"
