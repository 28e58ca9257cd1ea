"""One seeded replay of a scenario through the real monitor code.

The scenario's windows (``tasks.simulate.scenario_windows`` on the pool of held-out rows) are
scored by the champion and written as the prediction log, one window per period; each row's
label arrives after a random delay (up to ``label_lag_windows`` periods) and is written to the
feedback log only once that time has come. After each period the monitor runs as the deployed
flow does (``flows.monitor.run_monitor``: the same code without the Prefect engine), with a
recording emitter instead of Prefect events, and the replay notes what it decided beside what
was true (the window's realized metrics on all of its labels).

This package imports ``flows.monitor`` against the one-way arrows (tasks never import flows),
on purpose: what the replay measures is the monitor as deployed, its wiring included, and a copy
of that wiring here would measure a different decision path. The imports are local (no flow
module is imported with this one), and nothing in ``flows/`` imports ``tasks.replay``.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from schemas.base import DatasetSpec
from tasks.estimation.realized import binary_metrics
from tasks.events import RecordingEmitter
from tasks.replay.champion import SCORE, Prepared, score
from tasks.settings import Settings, get_settings
from tasks.simulate import DriftSpec, scenario_windows

if TYPE_CHECKING:
    from flows.monitor import MonitorConfig  # deliberate: see the module docstring


def start_time() -> datetime:
    """Midnight after tomorrow: replayed windows lie after the champion's registration (real
    time), so its cooldown has passed as it would in production."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=2)


# no change: windows per seed (a <= 1% retrain rate needs a few hundred windows to be told
# apart from 2%; quiet windows are the cheap ones). The horizon (7 windows) fills up too.
QUIET_WINDOWS = 18


@dataclass(frozen=True)
class ReplaySpec:
    """One scenario's replay: its drift, the windows and how labels arrive."""

    name: str
    drift: DriftSpec
    windows: int = 6
    rows: int = 2_000
    drift_from: int = 2
    period: timedelta = timedelta(days=1)
    label_lag_windows: float = 2.0  # a label arrives uniformly within this many periods
    label_share: float = 1.0  # of predictions that ever get a label


@dataclass(frozen=True)
class WindowOutcome:
    """What the monitor did after one period, beside the truth (window ``index`` is drifted
    from the scenario's ``drift_from`` on)."""

    seed: int
    index: int
    events: tuple[str, ...]
    retrain: bool
    drift_alert: bool  # any drift event (detected or reported), retraining or not
    univariate_drifting: bool
    feature_drifted: bool  # some feature drifted in the report (weighted score or not)
    multivariate_drifted: bool | None
    concept_drift: bool
    quality_failed: bool
    labels_matured_drifted: int  # labels of drifted windows arrived by this run
    realized_auc: float | None  # on all of the window's labels
    undrifted_auc: float | None  # the same window's rows before its drift (paired truth)
    estimated_auc: float | None
    estimated_lower: float | None
    estimated_upper: float | None
    monitor_seconds: float


@contextlib.contextmanager
def recording(emitter: RecordingEmitter) -> Iterator[None]:
    """The monitor's default emitter is ``emitter`` for the block."""
    from tasks.monitoring import decision

    before = decision.default_emitter
    decision.default_emitter = lambda: emitter  # type: ignore[assignment]
    try:
        yield
    finally:
        decision.default_emitter = before  # type: ignore[assignment]


def _reset(settings: Settings) -> None:
    for folder in (settings.predictions_dir, settings.feedback_dir):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
    settings.monitor_state.unlink(missing_ok=True)
    shutil.rmtree(settings.reports_dir / "monitor", ignore_errors=True)
    shutil.rmtree(settings.window_profiles_dir, ignore_errors=True)


def _labels(frame: pl.DataFrame, dataset: DatasetSpec) -> np.ndarray:
    return (frame[dataset.target].cast(pl.String) == str(dataset.positive_class)).to_numpy()


def _scorable(frame: pl.DataFrame, raw: pl.DataFrame, dataset: DatasetSpec) -> pl.DataFrame:
    """The rows the champion scores: the drifted ones, unless the drift broke the contract
    (then the service's upstream saw the raw rows and the log carries the broken ones)."""
    same = all(c in frame.columns and frame.schema[c] == raw.schema[c]
               for c in dataset.feature_columns)  # fmt: skip
    return frame if same else raw


def _log_window(frame, scores, *, i, seed, start, spec, prepared, dataset, settings):
    """Write window ``i`` as one prediction-log file; returns (request_id, ts) of its rows."""
    n = frame.height
    rng = np.random.default_rng(seed * 7919 + i)
    t0 = start + i * spec.period
    offsets = np.sort(rng.random(n)) * spec.period.total_seconds()
    ts = pl.Series("ts", [t0 + timedelta(seconds=float(s)) for s in offsets])
    ts = ts.cast(pl.Datetime("us", "UTC"))
    ids = pl.Series("request_id", [f"r{seed}-{i}-{k}" for k in range(n)])
    head = pl.DataFrame({
        "request_id": ids, "entity_id": ids, "ts": ts,
        "model_tag": [prepared.champion.tag] * n, "score": np.asarray(scores, dtype=np.float64),
        "decision": np.asarray(scores) >= 0.5, "shadow_tag": pl.Series([None] * n, dtype=pl.String),
        "shadow_score": pl.Series([None] * n, dtype=pl.Float64),
        "latency_ms": rng.gamma(2.0, 3.0, n),
    })  # fmt: skip
    inputs = frame.drop([c for c in frame.columns if c in head.columns or c == dataset.target])
    pl.concat([head, inputs], how="horizontal").write_parquet(
        settings.predictions_dir / f"window-{i:04d}.parquet"
    )
    return head.select("request_id", "ts")


def _label_arrivals(keys: pl.DataFrame, y: np.ndarray, *, i: int, seed: int, spec: ReplaySpec):
    rng = np.random.default_rng(seed * 104_729 + i)
    lag = rng.random(keys.height) * spec.label_lag_windows * spec.period.total_seconds()
    frame = keys.with_columns(
        label=pl.Series(y.astype(np.float64)),
        label_ts=pl.col("ts") + pl.duration(microseconds=pl.Series((lag * 1e6).astype(np.int64))),
        window=pl.lit(i),
    )
    return frame.filter(pl.Series(rng.random(keys.height) < spec.label_share))


def _write_feedback(pending: pl.DataFrame, until: datetime, settings: Settings, i: int):
    """Labels that arrived in the last period go to the feedback log; the rest wait."""
    due = pending.filter(pl.col("label_ts") <= until)
    if due.height:
        due.select(
            "request_id", pl.lit(None, pl.String).alias("entity_id"), "label",
            pl.col("label_ts").alias("ts"),
        ).write_parquet(settings.feedback_dir / f"labels-{i:04d}.parquet")  # fmt: skip
    return pending.filter(pl.col("label_ts") > until), due


def _outcome(doc: dict[str, Any], sent, *, seed, i, spec, matured, truth, seconds) -> WindowOutcome:
    """``truth``: the realized AUC of the window as logged and of its rows before the drift."""
    ev = doc.get("evidence") or {}
    est = ((ev.get("estimate") or {}).get("metrics") or {}).get("roc_auc") or {}
    domain = ev.get("multivariate")
    retrain = any(p.get("retrain", True) for k, p in sent if k != "data_quality_failed")
    return WindowOutcome(
        seed, i, tuple(k for k, _ in sent), retrain,
        any(k in ("drift_detected", "drift_reported") for k, _ in sent),
        bool((doc.get("drift") or {}).get("drifting")),
        bool((doc.get("drift") or {}).get("drifted_features")),
        None if domain is None else bool(domain["drifted"]), bool(ev.get("concept_drift")),
        not doc["quality"]["ok"], matured, *truth, est.get("value"), est.get("lower"),
        est.get("upper"), seconds,
    )  # fmt: skip


def _realized_auc(prepared: Prepared, y: np.ndarray, scores: np.ndarray) -> float | None:
    found = binary_metrics(y, scores, prepared.champion.metadata.get("threshold", 0.5)).roc_auc
    return found.value if found else None


def replay_seed(
    prepared: Prepared,
    dataset: DatasetSpec,
    spec: ReplaySpec,
    seed: int,
    config: MonitorConfig,
    settings: Settings | None = None,
) -> list[WindowOutcome]:
    """One seeded run of a scenario: ``spec.windows`` periods, a monitor run after each."""
    from flows.monitor import run_monitor  # the deployed monitor's code (module docstring)

    settings = settings or get_settings()
    _reset(settings)
    kw = dict(windows=spec.windows, rows=spec.rows, seed=seed)
    raw = scenario_windows(prepared.pool, dataset, spec.drift, drift_from=spec.windows, **kw)
    drifted = scenario_windows(prepared.pool, dataset, spec.drift, drift_from=spec.drift_from,
                               **kw)  # fmt: skip
    pending, matured, out, start = None, 0, [], start_time()
    for i, (frame, base) in enumerate(zip(drifted, raw, strict=True)):
        frame, base = frame.drop(SCORE, strict=False), base.drop(SCORE)
        scores = score(prepared.champion, _scorable(frame, base, dataset))
        y = _labels(frame if dataset.target in frame.columns else base, dataset)
        keys = _log_window(frame, scores, i=i, seed=seed, spec=spec, prepared=prepared,
                           start=start, dataset=dataset, settings=settings)  # fmt: skip
        arrivals = _label_arrivals(keys, y, i=i, seed=seed, spec=spec)
        pending = arrivals if pending is None else pl.concat([pending, arrivals])
        until = start + (i + 1) * spec.period
        pending, due = _write_feedback(pending, until, settings, i)
        matured += int((due["window"] >= spec.drift_from).sum())
        truth = _realized_auc(prepared, y, scores)
        undrifted = truth if i < spec.drift_from else _realized_auc(
            prepared, _labels(base, dataset), score(prepared.champion, base))  # fmt: skip
        emitter = RecordingEmitter("replay")
        started = time.perf_counter()
        with recording(emitter):
            doc = run_monitor(config.model_copy(update={"until": until, "now": until}))
        out.append(_outcome(doc, emitter.sent, seed=seed, i=i, spec=spec, matured=matured,
                            truth=(truth, undrifted),
                            seconds=time.perf_counter() - started))  # fmt: skip
    return out


def scenario_specs(prepared: Prepared, *, rows: int, windows: int) -> list[ReplaySpec]:
    """The issue's scenarios (``tasks.simulate.SCENARIOS``) as replays of ``rows``-row windows;
    the harmless shift tilts the champion's harmless feature within bins of its score; the
    correlation flip runs on 5,000-row windows (the acceptance target's size) unless ``rows``
    is smaller for a smoke; no change runs :data:`QUIET_WINDOWS` windows per seed unless
    ``windows`` is a smoke's."""
    from tasks.simulate import SCENARIOS

    out = []
    for name, drift in SCENARIOS.items():
        if name == "harmless_covariate":
            drift = replace(drift, column=prepared.harmless_feature, within=SCORE)
        if name == "harmful_covariate":
            drift = replace(drift, column=SCORE)
        size = max(rows, 5_000) if name == "correlation_flip" and rows >= 2_000 else rows
        count = max(windows, QUIET_WINDOWS) if name == "no_change" and windows >= 6 else windows
        out.append(ReplaySpec(name, drift, windows=count, rows=size))
    return out


@dataclass(frozen=True)
class DatasetReplay:
    dataset: str
    reference_auc: float
    harmless_feature: str  # the most frequent choice over the seeds
    seeds: int
    summaries: list[Any]  # tasks.replay.summary.ScenarioSummary
    seconds: float


def replay_dataset(
    frame: pl.DataFrame,
    dataset: DatasetSpec,
    *,
    seeds: int,
    scenarios: list[str] | None = None,
    windows: int = 6,
    rows: int = 2_000,
    settings: Settings | None = None,
    dataset_ref: str | None = None,
) -> DatasetReplay:
    """Train the champion on part of ``frame``, then replay every scenario ``seeds`` times.
    ``dataset_ref``: how the monitor loads the contract (a name or a module path; default
    the dataset's name)."""
    from flows.monitor import MonitorConfig  # the deployed monitor's config (module docstring)
    from tasks.replay.champion import ChampionParams, prepare_champion
    from tasks.replay.summary import summarize

    started = time.perf_counter()
    settings = (settings or get_settings()).ensure_dirs()
    config = MonitorConfig(dataset=dataset_ref or dataset.name, window_minutes=24 * 60)
    outcomes: dict[str, list[WindowOutcome]] = {}
    specs: dict[str, ReplaySpec] = {}
    aucs, harmless = [], []
    for seed in range(seeds):  # each seed its own split and champion: the pool varies too
        prepared = prepare_champion(frame, dataset, settings, ChampionParams(seed=seed))
        aucs.append(prepared.reference_auc)
        harmless.append(prepared.harmless_feature)
        for spec in scenario_specs(prepared, rows=rows, windows=windows):
            if scenarios and spec.name not in scenarios:
                continue
            specs[spec.name] = spec
            outcomes.setdefault(spec.name, []).extend(
                replay_seed(prepared, dataset, spec, seed, config, settings)
            )
    out = [summarize(specs[name], found) for name, found in outcomes.items()]
    return DatasetReplay(dataset.name, float(np.mean(aucs)), max(set(harmless), key=harmless.count),
                         seeds, out, time.perf_counter() - started)  # fmt: skip
