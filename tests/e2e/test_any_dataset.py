"""The README's bring-your-own-data sequence, through the CLI, on six real datasets of
different shapes: ``schema infer`` -> ``ingest`` -> ``train`` -> ``serve`` (a few ``/predict``
and ``/feedback`` calls) -> ``score`` -> ``monitor``. Nothing is edited by hand between steps
(``score`` needs no service: it runs while the service boots, to keep the set within minutes).

The datasets ship offline: scikit-learn's bundled breast cancer (a 0/1 integer target with
missing-value markers; again with a text target, an id and a categorical column), wine (three
integer classes, semicolon-delimited), iris (three text classes, Parquet), diabetes
(regression, with an event-time column), and the Telco file. One Prefect server (the session
harness) serves every flow run; each dataset gets its own home and ``bentoml serve``.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from driftloop.cli import build_app
from tests.support.server import Server
from tests.support.telco import REPO, TELCO_CSV

pytestmark = pytest.mark.e2e
TRIALS = "3"  # the sequence, not the tuning, is under test: keep the set within minutes


def _sklearn(loader: str) -> pl.DataFrame:
    import sklearn.datasets

    frame = getattr(sklearn.datasets, loader)(as_frame=True).frame
    return pl.from_pandas(frame)


def _cancer(path: Path) -> None:
    frame = _sklearn("load_breast_cancer").with_columns(pl.col("target").cast(pl.String))
    marked = pl.int_range(pl.len()).is_in([4, 40, 400])  # three labels never recorded
    frame = frame.with_columns(
        pl.when(marked).then(pl.lit("?")).otherwise("target").alias("target")
    )
    frame.write_csv(path)


def _cancer_labels(path: Path) -> None:
    frame = _sklearn("load_breast_cancer")
    rng = np.random.default_rng(5)
    frame = frame.select(
        pl.format("P{}", pl.int_range(pl.len())).alias("patient"),
        pl.Series("clinic", rng.choice(["north", "south", "west"], frame.height)),
        *frame.columns[:10],
        pl.when(pl.col("target") == 0).then(pl.lit("malignant")).otherwise(pl.lit("benign"))
        .alias("diagnosis"),
    )  # fmt: skip
    frame.write_csv(path)


def _wine(path: Path) -> None:
    _sklearn("load_wine").write_csv(path, separator=";")


def _iris(path: Path) -> None:
    frame = _sklearn("load_iris")
    names = pl.Series(["setosa", "versicolor", "virginica"])
    frame.with_columns(pl.col("target").map_elements(names.__getitem__, pl.String)).write_parquet(
        path
    )


def _diabetes(path: Path) -> None:
    frame = _sklearn("load_diabetes")
    start = datetime(2025, 1, 1, tzinfo=UTC)
    seen = [(start + timedelta(hours=6 * i)).strftime("%Y-%m-%dT%H:%M:%S") for i in range(442)]
    frame.with_columns(pl.Series("seen_at", seen)).write_csv(path)


def _telco(path: Path) -> None:
    path.write_bytes(TELCO_CSV.read_bytes())


@dataclass(frozen=True)
class Case:
    """One dataset: how to write it, what to tell `schema infer`, what it should decide."""

    write: Callable[[Path], None]
    file: str
    target: str
    task: str
    infer_args: tuple[str, ...] = ()
    train_args: tuple[str, ...] = ()
    classes: list | None = None
    quarantined: int = 0
    bad_record: dict = field(default_factory=dict)  # one field changed: the service says 4xx
    retrain: bool = False  # label every row through the service, then `driftloop retrain`


CASES = {
    "cancer": Case(_cancer, "cancer.csv", "target", "binary", quarantined=3),
    "cancer_labels": Case(
        _cancer_labels, "cancer_labels.csv", "diagnosis", "binary",
        infer_args=("--id", "patient", "--positive-class", "malignant"),
        bad_record={"clinic": "east"},  # a category the model never saw
    ),
    "wine": Case(
        _wine, "wine.csv", "target", "multiclass", infer_args=("--delimiter", ";"),
        train_args=("--min-rows", "100"), classes=[0, 1, 2], retrain=True,
    ),
    "iris": Case(
        _iris, "iris.parquet", "target", "multiclass", train_args=("--min-rows", "100"),
        classes=["setosa", "versicolor", "virginica"],
    ),
    "diabetes": Case(
        _diabetes, "diabetes.csv", "target", "regression", infer_args=("--event-time", "seen_at")
    ),
    "telco": Case(
        _telco, "telco.csv", "Churn", "binary", infer_args=("--id", "customerID"),
        bad_record={"Contract": "Weekly"},
    ),
}  # fmt: skip


def _run(*args: str) -> dict:
    """One CLI command with --json, in process (the session's Prefect server serves its flows)."""
    result = CliRunner().invoke(build_app(), [*args, "--json"])
    assert result.exit_code == 0, f"{' '.join(args)}: {result.output}"
    assert "Traceback" not in result.stderr and "database is locked" not in result.stderr
    return json.loads(result.stdout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dataset_name(request: pytest.FixtureRequest) -> Iterator[str]:
    """The module `schema infer` writes into schemas/, as the README says; removed after."""
    name = f"e2e_{request.param}"
    yield name
    (REPO / "schemas" / f"{name}.py").unlink(missing_ok=True)


def _records(path: Path, case: Case, n: int) -> tuple[list[dict], list]:
    """The first ``n`` labelled rows of the file as a client sends them, and their labels."""
    frame = (
        pl.read_parquet(path)
        if path.suffix == ".parquet"
        else pl.read_csv(path, separator=";" if "--delimiter" in case.infer_args else ",")
    )
    frame = frame.filter(pl.col(case.target).cast(pl.String) != "?").head(n)
    records = frame.drop(case.target).to_dicts()
    if "TotalCharges" in frame.columns:  # Telco's blank charges: absent, as a client sends
        records = [{k: v for k, v in r.items() if v not in (" ", None)} for r in records]
    return records, frame[case.target].to_list()


@pytest.mark.parametrize(
    ("case_name", "dataset_name"), [(c, c) for c in CASES], indirect=["dataset_name"]
)
def test_readme_sequence(
    case_name: str, dataset_name: str, home: Path, tmp_path: Path, prefect_harness
) -> None:
    """One home per dataset, as a deployment has: the prediction log is the home's."""
    case = CASES[case_name]
    data = tmp_path / case.file
    case.write(data)

    # 1. schema infer: the task decided from the values, and said why
    info = _run("schema", "infer", str(data), "--target", case.target, "--name", dataset_name,
                *case.infer_args)  # fmt: skip
    assert info["task"] == case.task, info["task_reason"]
    assert info["classes"] == case.classes and "distinct value" in info["task_reason"]

    # 2. ingest: nothing lost, labels never recorded are quarantined
    ingested = _run("ingest", str(data), "--dataset", dataset_name)
    assert ingested["rows_in"] == ingested["rows_accepted"] + ingested["rows_quarantined"]
    assert ingested["rows_quarantined"] == case.quarantined

    # 3. train: the first model becomes champion (no business value configured: F1 rule)
    trained = _run("train", "--dataset", dataset_name, "--data", str(data), "--trials", TRIALS,
                   *case.train_args)  # fmt: skip
    assert trained["alias"] == "champion" and trained["task"] == case.task
    if case.task == "binary":
        assert trained["business"]["configured"] is False and trained["threshold"] is not None
    if case.task == "multiclass":
        assert trained["metrics"]["log_loss"] >= 0 and trained["metrics"]["accuracy"] > 0.5

    # 4. serve, /predict and /feedback, and the bad inputs of the new paths; while the service
    # boots, 5. batch scoring through the service's code path (neither needs the other)
    records, labels = _records(data, case, 5)
    server = Server(home, _free_port(), dataset=dataset_name)
    try:
        out = tmp_path / "scores.parquet"
        scored = _run("score", str(data), "--out", str(out), "--dataset", dataset_name)
        server.wait_ready()
        answer = server.client.post("/predict", json={"records": records})
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert len(predictions) == len(records)
        if case.task == "multiclass":
            for p in predictions:
                assert p["predicted_class"] in {str(c) for c in case.classes}
                assert sum(p["probabilities"].values()) == pytest.approx(1.0)
                assert p["score"] == pytest.approx(max(p["probabilities"].values()))
        feedback = [
            {"request_id": p["request_id"], "label": label}
            for p, label in zip(predictions, labels, strict=True)
        ]
        sent = server.client.post("/feedback", json={"feedback": feedback})
        assert sent.status_code == 200 and sent.json()["accepted"] == len(feedback), sent.text
        if case.bad_record:
            bad = server.client.post("/predict", json={"records": [records[0] | case.bad_record]})
            assert bad.status_code == 400 and next(iter(case.bad_record)) in bad.text, bad.text
        if case.retrain:  # every row scored and labelled: enough feedback for the gate
            every, truth = _records(data, case, 10_000)
            scored_all = server.client.post("/predict", json={"records": every}).json()
            ids = [p["request_id"] for p in scored_all["predictions"]]
            feedback_all = [{"request_id": r, "label": t} for r, t in zip(ids, truth, strict=True)]
            assert (
                server.client.post("/feedback", json={"feedback": feedback_all}).status_code == 200
            )
            feedback += feedback_all
        if case.task == "multiclass":
            wrong = [{"request_id": predictions[0]["request_id"], "label": "no-such-class"}]
            refused = server.client.post("/feedback", json={"feedback": wrong})
            assert refused.status_code == 400 and "unknown label" in refused.text
            assert "expected" in refused.text  # the reason lists the known classes
            metrics = server.client.get("/metrics").text
            assert 'driftloop_validation_failures_total{field="label",rule="label"} 1.0' in metrics
    finally:
        server.stop()  # a clean stop flushes the prediction and feedback logs

    # 5. (run above, while the service booted) the batch scores
    assert scored["scored"] + scored["rejected"] == scored["rows"] > 0
    if case.task == "multiclass":
        columns = pl.read_parquet(out).columns
        assert "predicted_class" in columns
        assert all(f"proba_{c}" in columns for c in case.classes)

    # 6. monitor: a report, with the labels sent above joined to their predictions
    report = _run("monitor", "--dataset", dataset_name)
    assert Path(report["report_json"]).exists() and report["champion"] == trained["model_tag"]
    assert report["performance"]["labelled"] == len(feedback)

    # 7. retrain (multiclass): a challenger on reference + feedback, gated on the newest labels
    if case.retrain:
        gated = _run("retrain", "--dataset", dataset_name, "--trials", "2")
        assert gated["metric"] == "log_loss" and gated["n_holdout"] >= 50
        assert gated["champion_score"] is not None and gated["challenger_score"] is not None
        assert gated["challenger_tag"] not in (None, trained["model_tag"])
