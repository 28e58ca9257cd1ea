"""The replay's outputs: a JSON document, a markdown table, and the throwaway home it runs in
(the replay trains and registers champions: never in the user's own home)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasks.replay.run import DatasetReplay

COLUMNS = (
    ("scenario", "scenario"), ("rows_per_window", "rows"), ("seeds", "seeds"),
    ("alert_rate", "drift alerts"), ("retrain_rate", "retrains"),
    ("detected_within_2", "retrained ≤ 2 windows"), ("mean_delay_windows", "delay"),
    ("univariate_rate_drifted", "univariate drift"), ("multivariate_rate_drifted", "multivariate"),
    ("concept_flag_rate", "concept flagged"), ("auc_change", "AUC change"),
    ("estimate_mae", "estimate MAE"), ("estimate_coverage", "coverage"),
    ("monitor_seconds", "s / run"),
)  # fmt: skip


@contextlib.contextmanager
def temporary_home() -> Iterator[Path]:
    """``DRIFTLOOP_HOME`` (and BentoML's) in a fresh temporary folder for the block."""
    keys = ("DRIFTLOOP_HOME", "BENTOML_HOME", "WANDB_MODE")
    before = {k: os.environ.get(k) for k in keys}
    home = Path(tempfile.mkdtemp(prefix="driftloop-replay-"))
    os.environ.update({"DRIFTLOOP_HOME": str(home), "BENTOML_HOME": str(home / "bentoml"),
                       "WANDB_MODE": "disabled"})  # fmt: skip
    try:
        yield home
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(home, ignore_errors=True)


def to_json(replay: DatasetReplay) -> dict[str, Any]:
    return asdict(replay)


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def markdown_table(replay: DatasetReplay) -> str:
    """One row per scenario, then the acceptance targets met or not."""
    head = "| " + " | ".join(label for _, label in COLUMNS) + " |"
    rule = "|" + "---|" * len(COLUMNS)
    rows = [
        "| " + " | ".join(_cell(getattr(s, key)) for key, _ in COLUMNS) + " |"
        for s in replay.summaries
    ]
    targets = [
        f"- {s.scenario}: {t.name} = {_cell(t.value)} (target {t.goal}): "
        f"{'met' if t.met else 'not met' if t.met is False else 'not measured'}"
        for s in replay.summaries
        for t in s.targets
    ]
    return "\n".join([head, rule, *rows, "", *targets])
