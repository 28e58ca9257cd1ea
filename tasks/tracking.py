"""Experiment tracking in Weights & Biases: the only module of driftloop that imports wandb.

One W&B run per training (job type ``train``): every Optuna trial is one history row
(``trial/*``), then the final model's per-iteration valid metric (``final/*``), its test
metrics, curves, confusion matrix and feature importance, and its registry tag in the summary.
One run per study, not one per trial: starting a run costs seconds (a service process, files),
more than a trial on a dataset like Telco, and a trial's few numbers fit a history row.

Mode: ``WANDB_MODE`` if set (tests set ``disabled``), else ``online`` when ``WANDB_API_KEY`` is
set, else ``offline`` (runs land in ``<wandb_dir>/wandb/offline-run-*``; ``wandb sync`` uploads
them). :func:`read_offline_run` reads a run's metrics back from its ``run-*.wandb`` file.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.settings import Settings

if TYPE_CHECKING:
    import wandb

    from tasks.training.model import Scored, TrainedModel

PROJECT = "driftloop"
CURVE_POINTS = 200  # ROC/PR curves are downsampled to keep the run small
_REPO = Path(__file__).resolve().parents[1]


def tracking_mode() -> str:
    mode = os.environ.get("WANDB_MODE")
    if mode:
        return mode
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def git_sha() -> str | None:
    """The code version: HEAD's SHA, with ``-dirty`` when tracked files have changes."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=_REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=_REPO, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{sha}-dirty" if dirty else sha


@dataclass
class Tracker:
    """A live W&B run, or a no-op when tracking is disabled (``run is None``)."""

    run: wandb.Run | None = None
    mode: str = "disabled"
    run_dir: str | None = None  # ``.../offline-run-<time>-<id>``, holding ``run-*.wandb``
    run_path: str | None = None  # entity/project/id

    def log_trial(self, row: dict[str, Any]) -> None:
        """One Optuna trial as a history row."""
        if self.run is None:
            return
        data = {f"trial/{k}": v for k, v in row.items() if k != "params" and v is not None}
        data.update({f"trial/param/{k}": v for k, v in row["params"].items()})
        self.run.log(data)

    def log_iterations(self, evals: dict[str, dict[str, list[float]]]) -> None:
        """The final model's per-iteration metrics (``lightgbm.record_evaluation`` output)."""
        if self.run is None:
            return
        for split, by_metric in evals.items():
            for metric, values in by_metric.items():
                for i, value in enumerate(values, start=1):
                    self.run.log({"final/iteration": i, f"final/{split}_{metric}": value})

    def log_summary(self, values: dict[str, Any]) -> None:
        """Final scalars (flattened with ``/``) into the run summary."""
        if self.run is None:
            return
        for key, value in _flatten(values).items():
            self.run.summary[key] = value

    def log_evaluation(
        self,
        y: np.ndarray,
        scores: np.ndarray,
        threshold: float | None,
        importance: dict[str, float],
        task: str,
    ) -> None:
        """ROC and PR curves, confusion matrix (binary) and feature importance charts."""
        if self.run is None:
            return
        import wandb

        charts: dict[str, Any] = {}
        if task == "binary" and len(np.unique(y)) == 2:
            from tasks.metrics import precision_recall_curve, roc_curve

            fpr, tpr, _ = roc_curve(y, scores)
            prec, rec, _ = precision_recall_curve(y, scores)
            charts["test/roc_curve"] = _curve(wandb, fpr, tpr, "fpr", "tpr", "ROC (test)")
            charts["test/pr_curve"] = _curve(wandb, rec, prec, "recall", "precision", "PR (test)")
            preds = np.asarray(scores) >= (0.5 if threshold is None else threshold)
            charts["test/confusion_matrix"] = _confusion(wandb, np.asarray(y) == 1, preds)
        table = wandb.Table(columns=["feature", "gain"], data=list(importance.items()))
        charts["feature_importance"] = wandb.plot.bar(table, "feature", "gain", title="Gain")
        self.run.log(charts)

    def log_model(
        self,
        *,
        tag: str,
        model: TrainedModel,
        scored: Scored,
        threshold: float | None,
        summary: dict[str, Any],
        task: str,
    ) -> None:
        """The final model: per-iteration metrics, test charts, final metrics, registry tag."""
        self.log_iterations(model.evals)
        self.log_evaluation(scored.test_y, scored.test_scores, threshold, model.importance(), task)
        self.log_summary({**summary, "model_tag": tag})

    def references(self) -> dict[str, str | None]:
        """Where the run is, for a model's lineage."""
        return {"wandb_run_path": self.run_path, "wandb_run_dir": self.run_dir}

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.finish(exit_code=0 if exc_type is None else 1)


def _confusion(wandb: ModuleType, actual: np.ndarray, predicted: np.ndarray) -> Any:
    """W&B's confusion-matrix chart from counts made with numpy (``wandb.plot.confusion_matrix``
    counts in a Python loop: 6 s for 200k rows)."""
    names = {False: "negative", True: "positive"}
    rows = [
        [names[a], names[p], int(np.sum((actual == a) & (predicted == p)))]
        for a in (False, True)
        for p in (False, True)
    ]
    table = wandb.Table(columns=["Actual", "Predicted", "nPredictions"], data=rows)
    fields = {"Actual": "Actual", "Predicted": "Predicted", "nPredictions": "nPredictions"}
    return wandb.plot_table(
        "wandb/confusion_matrix/v1", table, fields, {"title": "Confusion matrix (test)"}
    )


def _curve(wandb: ModuleType, x: np.ndarray, y: np.ndarray, xn: str, yn: str, title: str) -> Any:
    keep = np.unique(np.linspace(0, len(x) - 1, min(len(x), CURVE_POINTS)).astype(int))
    table = wandb.Table(columns=[xn, yn], data=[[float(x[i]), float(y[i])] for i in keep])
    return wandb.plot.line(table, xn, yn, title=title)


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}/"))
        elif value is None or isinstance(value, str | int | float | bool):
            out[name] = value
    return out


def start_run(
    settings: Settings,
    *,
    name: str,
    config: dict[str, Any],
    group: str | None = None,
    job_type: str = "train",
    tags: list[str] | None = None,
) -> Tracker:
    """Start a W&B run with its files under ``settings.wandb_dir``. Always call ``finish()``."""
    mode = tracking_mode()
    if mode == "disabled":
        return Tracker()
    import wandb

    for key, value in settings.library_env().items():
        if key.startswith("WANDB_") and key != "WANDB_MODE":
            os.environ[key] = value
    settings.wandb_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=os.environ.get("WANDB_PROJECT", PROJECT),
        name=name,
        group=group,
        job_type=job_type,
        tags=tags,
        config=config,
        dir=str(settings.wandb_dir),
        mode=mode,
        reinit="finish_previous",
        settings=wandb.Settings(
            silent=True, console="off", x_disable_stats=True, disable_git=True, save_code=False
        ),
    )
    run.define_metric("trial/number")
    run.define_metric("trial/*", step_metric="trial/number")
    run.define_metric("final/iteration")
    run.define_metric("final/*", step_metric="final/iteration")
    path = "/".join(p for p in (run.entity, run.project, run.id) if p)
    return Tracker(run=run, mode=mode, run_dir=str(Path(run.dir).parent), run_path=path)


# --- reading offline runs back ------------------------------------------------------------
# wandb's private on-disk format (no public reader in 0.31): tests/tasks/test_tracking.py
# `test_pinned_wandb_writes_the_offline_format_the_reader_assumes` fails if it changes.


@dataclass
class OfflineRun:
    """What a run recorded: config, history rows and the final summary."""

    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


_BLOCK = 32 * 1024
_HEADER = 7  # both the file header (":W&B" + 3 bytes) and each record header


def _log_records(data: bytes):
    """Payloads of a LevelDB-log framed file: 32 KiB blocks of (crc32, length, type) records."""
    pos, pending = _HEADER, b""
    while pos + _HEADER <= len(data):
        if _BLOCK - pos % _BLOCK < _HEADER:  # block trailer too short for a header: padding
            pos += _BLOCK - pos % _BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        chunk = data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length
        if kind == 1:
            yield chunk
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            yield pending + chunk


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def read_offline_run(run_dir: str | Path, wait_s: float = 30.0) -> OfflineRun:
    """Parse ``<run_dir>/run-*.wandb`` (offline runs write no ``wandb-summary.json``).

    A finished run's file ends with its ``exit`` record, but wandb-core (0.31) may still be
    writing the file's last block for a moment after ``finish()`` returns (seen: the file cut
    at 64 KiB, the summary missing, complete 0.25 s later). So wait up to ``wait_s`` for the
    exit record; a run that never finished is read as far as it goes."""
    from wandb.proto import wandb_internal_pb2 as pb

    files = sorted(Path(run_dir).glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"no run-*.wandb file in {run_dir}")
    deadline = time.monotonic() + wait_s
    while True:
        records = []
        for payload in _log_records(files[0].read_bytes()):
            rec = pb.Record()
            rec.ParseFromString(payload)
            records.append(rec)
        finished = any(r.WhichOneof("record_type") == "exit" for r in records)
        if finished or time.monotonic() >= deadline:
            return _offline_run(records)
        time.sleep(0.1)


def _offline_run(records: list[Any]) -> OfflineRun:
    out = OfflineRun()
    for rec in records:
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            out.history.append({_key(i): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            out.summary.update({_key(i): json.loads(i.value_json) for i in rec.summary.update})
        elif kind == "config":
            out.config.update({_key(i): json.loads(i.value_json) for i in rec.config.update})
        elif kind == "run":
            out.config.update({_key(i): json.loads(i.value_json) for i in rec.run.config.update})
    return out
