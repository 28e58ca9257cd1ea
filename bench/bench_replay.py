"""Replay benchmark of decisions (issue #14), and the NannyML peer on the same windows.

For Telco and a generated binary dataset: every scenario of ``tasks.simulate.SCENARIOS``,
many seeded runs (each seed its own champion, split and pool), each window written as a
prediction log with delayed labels and judged by the real monitor code
(``tasks.replay``). Rows: per scenario alert and retrain rates, detection delay, estimate
error and interval coverage, with the issue's acceptance targets.

Peer: on covariate-shift windows of 2,000 rows (rows selected by the champion's score or by a
feature: P(label | inputs) unchanged), our CBPE against NannyML's CBPE (estimated ROC AUC vs
realized: mean absolute error, 95% interval coverage, time), and on correlation-flip windows of
5,000 rows our domain classifier against NannyML's PCA reconstruction drift (flag rate, time).
NannyML runs in its own venv (as the Evidently peer does), on the same Parquet files.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.harness import REPO, main, metric, not_available, quick_skip, scratch_dir

AREA = "replay"
NANNYML_VENV = Path(tempfile.gettempdir()) / "driftloop-nannyml-venv"
NANNYML_PINS = ("nannyml==0.13.1", "statsmodels", "pyarrow")
SEEDS = 20  # seeded runs per scenario and dataset (each its own champion); env BENCH_REPLAY_SEEDS
PEER_WINDOWS = 40  # covariate-shift windows for the estimate comparison, per champion
PEER_SEEDS = 3  # champions for the estimate comparison; env BENCH_PEER_SEEDS
FLIP_WINDOWS = 10


def _datasets(quick: bool) -> list[tuple[str, Any, Any, str]]:
    """(label, DatasetSpec, frame, how to load it): Telco and the replay's generated binary
    table (``tasks.replay.synth``) with its contract."""
    from schemas import load_dataset
    from tasks.ingest.compose import read_valid_rows
    from tasks.replay.synth import write_correlated

    telco = load_dataset("telco")
    out = [
        (
            "telco",
            telco,
            read_valid_rows(REPO / "data" / "telco_churn.csv", telco).accepted,
            "telco",
        )
    ]
    if quick:  # the smoke run's budget is seconds: one dataset
        return out
    # correlated features the label depends on: the correlation flip is a real change
    csv, module = write_correlated(scratch_dir() / "replay_synth", rows=40_000, seed=3)
    synth = load_dataset(str(module))
    out.append(
        ("generated (replay_synth)", synth, read_valid_rows(csv, synth).accepted, str(module))
    )
    return out


def _scenario_rows(label: str, replay: Any) -> list[dict[str, Any]]:
    rows = []
    for s in replay.summaries:
        lo, hi = s.retrain_interval
        note = (f"{s.seeds} seeds x {s.windows // max(s.seeds, 1)} windows of "
                f"{s.rows_per_window:,} rows; alerts {s.alerts}/{s.windows}, retrains "
                f"{s.retrains}/{s.windows} = {s.retrain_rate:.3f} (95% CI {lo:.3f}-{hi:.3f}; "
                f"{s.seeds_retrained} of {s.seeds} seeds), delay {s.mean_delay_windows}, "
                f"univariate {s.univariate_rate_drifted}, multivariate "
                f"{s.multivariate_rate_drifted}, AUC change {s.auc_change} (paired; unpaired "
                f"{s.auc_change_unpaired}), estimate MAE "
                f"{s.estimate_mae}, coverage {s.estimate_coverage}, {s.monitor_seconds:.2f} s "
                "per monitor run")  # fmt: skip
        rows.append(metric(AREA, f"{label}: {s.scenario}, retrain rate", s.retrain_rate, "share",
                           note=note))  # fmt: skip
        for t in s.targets:
            goal = t.goal.replace("<=", "≤").replace(">=", "≥")
            unit = "AUC" if "AUC" in t.name else "share"
            rows.append(metric(AREA, f"{label}: {s.scenario}, {t.name}", t.value, unit,
                               target=goal, note=note))  # fmt: skip
    return rows


def _peer_windows(prepared: Any, dataset: Any, rows: int, count: int, kinds: list[Any]):
    """``count`` windows of ``rows`` rows, cycling through the drift specs ``kinds``."""
    from tasks.replay.champion import SCORE, score
    from tasks.simulate import scenario_windows

    out = []
    for k in range(count):
        spec = kinds[k % len(kinds)]
        (window,) = scenario_windows(prepared.pool, dataset, spec, windows=1, rows=rows, seed=k)
        window = window.drop(SCORE)
        y = (window[dataset.target].cast(str) == str(dataset.positive_class)).to_numpy()
        out.append((window, score(prepared.champion, window), y))
    return out


def _ours(prepared: Any, dataset: Any, windows: list) -> dict[str, Any]:
    """Our CBPE fitted on the champion's labelled reference rows (as the monitor fits it) and
    run on each window: per-window estimate and realized value, and the time of the fit and of
    the estimates (as NannyML's is measured)."""
    import numpy as np

    from tasks.estimation.cbpe import ValueKnobs, estimate_performance, fit_cbpe
    from tasks.estimation.realized import binary_metrics
    from tasks.profiling import LABEL_COLUMN, SCORE_COLUMN, load_reference

    champion = prepared.champion
    threshold = champion.metadata.get("threshold", 0.5)
    sample = load_reference(champion.tag).sample.drop_nulls(LABEL_COLUMN)
    knobs = ValueKnobs.from_extras(getattr(dataset, "extras", {}) or {})
    t0 = time.perf_counter()
    model = fit_cbpe(sample[SCORE_COLUMN].to_numpy(), sample[LABEL_COLUMN].to_numpy(),
                     threshold=threshold, value=knobs)  # fmt: skip
    fit_s = time.perf_counter() - t0
    est, real, cover, seconds = [], [], [], 0.0
    for _, s, y in windows:
        t0 = time.perf_counter()
        e = estimate_performance(model, s).metrics.roc_auc
        seconds += time.perf_counter() - t0
        r = binary_metrics(y, s, threshold).roc_auc.value
        est.append(e.value), real.append(r), cover.append(e.covers(r))
    return {"est": np.array(est), "real": np.array(real), "cover": np.array(cover),
            "fit_s": fit_s, "estimate_s": seconds}  # fmt: skip


_NANNYML_SCRIPT = """
import json, sys, time
import pandas as pd, nannyml as nml
ref = pd.read_parquet(sys.argv[1]); cur = pd.read_parquet(sys.argv[2]); n = int(sys.argv[3])
n_flip = int(sys.argv[5])
features = [c for c in ref.columns if c not in ("p", "pred", "y")]
t0 = time.perf_counter()
cbpe = nml.CBPE(y_pred_proba="p", y_pred="pred", y_true="y", metrics=["roc_auc"],
                problem_type="classification_binary", chunk_size=n).fit(ref)
t_fit = time.perf_counter() - t0
est = cbpe.estimate(cur.drop(columns=["y"])).filter(period="analysis").to_df()
t_cbpe = time.perf_counter() - t0
t0 = time.perf_counter()
flagged = None
if sys.argv[4] != "-":
    flip = pd.read_parquet(sys.argv[4])
    drc = nml.DataReconstructionDriftCalculator(column_names=features, chunk_size=n_flip)
    drc.fit(ref)
    res = drc.calculate(flip).filter(period="analysis").to_df()
    flagged = [bool(a) for a in res[("reconstruction_error", "alert")]]
t_drc = time.perf_counter() - t0
print(json.dumps({"value": est[("roc_auc", "value")].tolist(),
                  "se": est[("roc_auc", "sampling_error")].tolist(), "t_cbpe": t_cbpe,
                  "t_fit": t_fit, "flagged": flagged, "t_drc": t_drc, "version": nml.__version__}))
"""


def _nannyml_venv() -> str | None:
    """The peer's own venv, built with uv once per machine; None if it works."""
    import shutil

    python = NANNYML_VENV / "bin" / "python"
    if python.exists():
        return None
    uv = [found] if (found := shutil.which("uv")) else ["python3", "-m", "uv"]
    install = [*uv, "pip", "install", "--quiet", "--python", str(python), *NANNYML_PINS]
    steps = ([*uv, "venv", "--quiet", str(NANNYML_VENV), "--python", "3.11"], install)
    for cmd in steps:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{cmd[len(uv)]} failed: {exc}"
        if done.returncode != 0:
            return " ".join((done.stderr or done.stdout).strip().splitlines()[-1:])
    return None


def _frames_for_peer(prepared: Any, dataset: Any, windows: list, flips: list):
    import numpy as np
    import polars as pl

    from tasks.monitoring.estimators import encode
    from tasks.profiling import LABEL_COLUMN, SCORE_COLUMN, load_reference

    sample = load_reference(prepared.champion.tag).sample
    thr = prepared.champion.metadata.get("threshold", 0.5)

    def table(frame, s, y):
        return encode(frame, dataset).with_columns(
            p=pl.Series(np.asarray(s, dtype=float)), pred=pl.Series((np.asarray(s) >= thr)
            .astype(np.int64)), y=pl.Series(np.asarray(y, dtype=np.int64)))  # fmt: skip

    ref = table(sample, sample[SCORE_COLUMN].to_numpy(), sample[LABEL_COLUMN].to_numpy())
    cur = pl.concat([table(w, s, y) for w, s, y in windows])
    flip = pl.concat([table(w, s, y) for w, s, y in flips]) if flips else None
    return ref, cur, flip


def _peer_seed(label: str, dataset: Any, frame: Any, seed: int, flips_too: bool):
    """One champion (its own split): our CBPE on the covariate-shift windows, our domain
    classifier on the correlation-flip windows (``flips_too``), and the frames for NannyML."""
    import numpy as np

    from tasks.estimation.domain import domain_drift
    from tasks.monitoring.estimators import encode, load_estimators
    from tasks.monitoring.window import load_champion
    from tasks.profiling import load_reference
    from tasks.replay.champion import SCORE, ChampionParams, prepare_champion
    from tasks.replay.report import temporary_home
    from tasks.simulate import SCENARIOS

    with temporary_home():
        prepared = prepare_champion(frame, dataset, params=ChampionParams(seed=seed))
        kinds = [replace(SCENARIOS["harmful_covariate"], column=SCORE, severity=sev)
                 for sev in (0.5, 1.0, 2.0)]  # fmt: skip
        kinds.append(
            replace(SCENARIOS["harmless_covariate"], column=prepared.harmless_feature, within=SCORE)
        )
        windows = _peer_windows(prepared, dataset, 2_000, PEER_WINDOWS, kinds)
        ours = _ours(prepared, dataset, windows)
        flips, flagged, t_domain = [], [], 0.0
        if flips_too:
            flips = _peer_windows(prepared, dataset, 5_000, FLIP_WINDOWS,
                                  [SCENARIOS["correlation_flip"]])  # fmt: skip
            champion = load_champion(dataset.name)
            fitted = load_estimators(load_reference(champion.tag), dataset, champion)
            t0 = time.perf_counter()
            flagged = [domain_drift(fitted.domain, encode(w, dataset)).drifted for w, _, _ in flips]
            t_domain = time.perf_counter() - t0
        frames = _frames_for_peer(prepared, dataset, windows, flips)
    return ours, (float(np.mean(flagged)) if flips else None, len(flips), t_domain), frames


def _peer_rows(label: str, dataset: Any, frame: Any) -> list[dict[str, Any]]:
    """Our CBPE and domain classifier against NannyML's on the same windows, over
    ``PEER_SEEDS`` champions (one champion's calibration error is shared by all its windows,
    so one champion says little about which estimator is better)."""
    import numpy as np

    name = f"{label}: estimated ROC AUC on covariate-shift windows of 2,000 rows"
    seeds = int(os.environ.get("BENCH_PEER_SEEDS", PEER_SEEDS))
    ours, theirs = [], []
    failed = _nannyml_venv()
    for seed in range(seeds):
        mine, flip_stats, frames = _peer_seed(label, dataset, frame, seed, flips_too=seed == 0)
        ours.append(mine)
        if seed == 0:
            flip_rate, n_flips, t_domain = flip_stats
        theirs.append(failed or _run_nannyml(*frames))
    err = np.concatenate([np.abs(o["est"] - o["real"]) for o in ours])
    cover = np.concatenate([o["cover"] for o in ours])
    t_ours = sum(o["fit_s"] + o["estimate_s"] for o in ours)
    per_seed = ", ".join(f"{np.mean(np.abs(o['est'] - o['real'])):.4f}" for o in ours)
    what = (f"{seeds} champions x {PEER_WINDOWS} windows (score narrowed 0.5/1/2, harmless "
            "feature tilted); CBPE fitted on each champion's held-out rows")  # fmt: skip
    rows = [metric(AREA, f"{name}, ours: mean absolute error", float(err.mean()), "AUC",
                   target="≤ 0.02", note=f"{what}; per champion {per_seed}"),
            metric(AREA, f"{name}, ours: 95% interval coverage", float(cover.mean()), "share",
                   target="≥ 0.9", note=f"{cover.size} windows; per champion "
                   + ", ".join(f"{o['cover'].mean():.3f}" for o in ours)),
            metric(AREA, f"{name}, ours: time (fit + estimates)", t_ours, "s",
                   note=f"estimates alone {sum(o['estimate_s'] for o in ours):.3f} s"),
            metric(AREA, f"{label}: correlation flip, 5,000-row windows, ours: multivariate "
                   "flagged", flip_rate, "share", target="≥ 0.9",
                   note=f"{n_flips} windows; domain classifier, {t_domain:.2f} s")]  # fmt: skip
    return rows + _nannyml_rows(name, label, ours, theirs)


def _run_nannyml(ref: Any, cur: Any, flip: Any) -> dict[str, Any] | str:
    """NannyML's CBPE (and PCA reconstruction drift on ``flip``) in its own venv, on the same
    frames; its JSON answer, or why it failed."""
    folder = scratch_dir() / "nannyml"
    folder.mkdir(parents=True, exist_ok=True)
    ref.write_parquet(folder / "ref.parquet")
    cur.write_parquet(folder / "cur.parquet")
    if flip is not None:
        flip.write_parquet(folder / "flip.parquet")
    script = folder / "peer.py"
    script.write_text(_NANNYML_SCRIPT)
    args = [str(NANNYML_VENV / "bin" / "python"), str(script), str(folder / "ref.parquet"),
            str(folder / "cur.parquet"), "2000",
            str(folder / "flip.parquet") if flip is not None else "-", "5000"]  # fmt: skip
    env = {**os.environ, "NML_DISABLE_USAGE_LOGGING": "1"}  # offline: no usage upload tries
    done = subprocess.run(args, capture_output=True, text=True, timeout=1_800, env=env)
    if done.returncode != 0:
        return "NannyML failed: " + " ".join((done.stderr or done.stdout).strip().splitlines()[-1:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def _nannyml_rows(name: str, label: str, ours: list, theirs: list) -> list[dict[str, Any]]:
    import numpy as np

    failed = next((t for t in theirs if isinstance(t, str)), None)
    if failed:
        return [not_available(AREA, f"{name}, NannyML CBPE", "AUC", failed)]
    real = np.concatenate([o["real"] for o in ours])
    value = np.concatenate([np.array(t["value"], dtype=float) for t in theirs])
    se = np.concatenate([np.array(t["se"], dtype=float) for t in theirs])
    err = np.abs(value - real)
    mae = float(err.mean())
    ours_err = np.concatenate([np.abs(o["est"] - o["real"]) for o in ours])
    t_theirs = sum(t["t_cbpe"] for t in theirs)
    t_ours = sum(o["fit_s"] + o["estimate_s"] for o in ours)
    est_ratio = sum(t["t_cbpe"] - t["t_fit"] for t in theirs) / sum(o["estimate_s"] for o in ours)
    per_seed = ", ".join(f"{np.mean(np.abs(np.array(t['value']) - o['real'])):.4f}"
                         for t, o in zip(theirs, ours, strict=True))  # fmt: skip
    note = (f"nannyml {theirs[0]['version']} in its own venv, same {err.size} windows and "
            f"references; per champion {per_seed}")  # fmt: skip
    rows = [metric(AREA, f"{name}, NannyML CBPE: mean absolute error", mae, "AUC", note=note),
            metric(AREA, f"{name}, NannyML CBPE: 95% interval coverage",
                   float(np.mean(err <= 1.96 * se)), "share",
                   note="value ± 1.96 sampling errors"),
            metric(AREA, f"{name}, NannyML CBPE: time (fit + estimates)", t_theirs, "s",
                   note=note),
            metric(AREA, f"{name}: ours no worse than NannyML (their MAE - ours)",
                   mae - float(ours_err.mean()), "AUC", target="≥ 0",
                   note=f"paired over {err.size} windows: ours closer in "
                   f"{np.mean(ours_err < err):.2f}, tied {np.mean(ours_err == err):.2f}"),
            metric(AREA, f"{name}: NannyML time / ours", t_theirs / t_ours, "x",
                   target="≥ 5", note=f"fit + estimates, each side; estimates alone "
                   f"{est_ratio:.1f}x")]  # fmt: skip
    if theirs[0]["flagged"] is not None:
        rows.append(metric(AREA, f"{label}: correlation flip, 5,000-row windows, NannyML PCA "
                           "reconstruction: flagged", float(np.mean(theirs[0]["flagged"])),
                           "share", note=f"{theirs[0]['t_drc']:.2f} s, same windows"))  # fmt: skip
    return rows


# --- the monitor with everything: speed at 100k rows, memory at 1M ----------------------------


def _prepare_with_labels(rows: int) -> str:
    """``bench_profiling``'s monitored home plus labels for half of the window's predictions
    (arrived just before the run): every step of the monitor has work to do."""
    import numpy as np
    import polars as pl

    from bench.bench_profiling import UNTIL, prepare_monitored_home
    from schemas.records import TS
    from tasks.predlog import load_predictions
    from tasks.settings import get_settings

    dataset = prepare_monitored_home(rows)
    preds = load_predictions().select("request_id", "score")[::2]
    rng = np.random.default_rng(5)
    labels = (rng.random(preds.height) < preds["score"].to_numpy()).astype(float)
    pl.DataFrame({
        "request_id": preds["request_id"], "entity_id": pl.Series([None] * preds.height,
                                                                 dtype=pl.String),
        "label": labels, "ts": pl.Series([UNTIL - timedelta(seconds=30)] * preds.height, dtype=TS),
    }).write_parquet(get_settings().feedback_dir / "labels.parquet")  # fmt: skip
    return dataset


def _monitor_speed(rows: int, n: int, quick: bool) -> list[dict[str, Any]]:
    from bench.bench_profiling import _drop_events, _monitor_config
    from bench.harness import Stats, temporary_prefect_server
    from flows.monitor import monitor, run_monitor

    config = _monitor_config(_prepare_with_labels(rows))
    _drop_events()
    t0 = time.perf_counter()
    first = run_monitor(config)  # fits and caches the champion's estimators
    fit_s = time.perf_counter() - t0
    assert first["evidence"]["estimate"] is not None and first["evidence"]["windows"]
    plain = [_timed(lambda: run_monitor(config)) for _ in range(n)]
    name = f"monitor with late labels, estimate, trust, domain classifier: {rows:,}-row window"
    out = [metric(AREA, f"{name}, first run (fits the estimators)", fit_s, "s",
                  note="once per champion; cached beside its reference"),
           metric(AREA, f"{name}, without the Prefect engine", None, "s",
                  stats=Stats.of(plain), note="flows.monitor.run_monitor")]  # fmt: skip
    if quick:
        return [*out, quick_skip(AREA, f"{name}, Prefect flow wall time", "s", target="≤ 3 s")]
    with temporary_prefect_server():
        timed = [_timed(lambda: monitor(config=config)) for _ in range(n)]
    labelled = sum(w["labels"] for w in first["evidence"]["windows"])
    return [*out, metric(AREA, f"{name}, Prefect flow wall time", None, "s", target="≤ 3 s",
                         stats=Stats.of(timed),
                         note=f"real @flow with its task runs on a temporary Prefect server; "
                              f"{labelled:,} labels")]  # fmt: skip


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _monitor_memory(rows: int) -> dict[str, Any]:
    """Peak RSS of one monitor run (estimators cached) on a ``rows``-row window with labels,
    measured from outside; the preparation runs in its own process."""
    import sys

    from bench.harness import MiB, bench_env, make_temp_base, remove_temp, run_measured

    base = make_temp_base()
    try:
        env = bench_env(base)
        me = [sys.executable, "-m", "bench.bench_replay"]
        prep = run_measured([*me, "--prepare", str(rows)], env, timeout=1_800).check()
        dataset = prep.stdout.strip().splitlines()[-1]
        run = run_measured([*me, "--monitor-child", dataset], env, timeout=1_800).check()
        done = json.loads(run.stdout.strip().splitlines()[-1])
    finally:
        remove_temp(base)
    return metric(AREA, f"monitor with everything: peak memory, {rows:,}-row window",
                  run.peak_rss / MiB, "MiB", target="≤ 1024 MiB",
                  note=f"peak RSS from outside; {done['rows']:,} rows, {done['labels']:,} "
                       f"labels, {run.wall_s:.1f} s")  # fmt: skip


def _child(argv: list[str]) -> None:
    from bench.bench_profiling import _drop_events, _monitor_config
    from flows.monitor import run_monitor

    if argv[0] == "--prepare":
        dataset = _prepare_with_labels(int(argv[1]))
        run_monitor(_monitor_config(dataset))  # fit the estimators here, not in the measured run
        print(dataset)
        return
    _drop_events()
    report = run_monitor(_monitor_config(argv[1]))
    labels = sum(w["labels"] for w in report["evidence"]["windows"])
    print(json.dumps({"rows": report["window"]["rows"], "labels": labels}))


def run(quick: bool) -> list[dict[str, Any]]:
    from tasks.replay.report import temporary_home
    from tasks.replay.run import replay_dataset

    rows: list[dict[str, Any]] = []
    for label, dataset, frame, ref in _datasets(quick):
        with temporary_home():
            started = time.perf_counter()
            seeds = 1 if quick else int(os.environ.get("BENCH_REPLAY_SEEDS", SEEDS))
            replay = replay_dataset(frame, dataset, seeds=seeds,
                                    windows=3 if quick else 6, rows=300 if quick else 2_000,
                                    scenarios=["no_change"] if quick else None,
                                    dataset_ref=ref)  # fmt: skip
        rows += _scenario_rows(label, replay)
        rows.append(metric(AREA, f"{label}: replay wall time", time.perf_counter() - started, "s",
                           note=f"reference AUC {replay.reference_auc:.3f}"))  # fmt: skip
        if quick:
            rows.append(quick_skip(AREA, f"{label}: estimate vs NannyML CBPE", "AUC"))
        else:
            rows += _peer_rows(label, dataset, frame)
    rows += _monitor_speed(5_000 if quick else 100_000, n=1 if quick else 3, quick=quick)
    if quick:
        rows.append(quick_skip(AREA, "monitor with everything: peak memory, 1,000,000-row window",
                               "MiB", target="≤ 1024 MiB"))  # fmt: skip
    else:
        rows.append(_monitor_memory(1_000_000))
    return rows


if __name__ == "__main__":
    import sys

    if {"--prepare", "--monitor-child"} & set(sys.argv):
        os.environ.setdefault("WHYLOGS_NO_ANALYTICS", "True")
        _child(sys.argv[1:])
    else:
        main(AREA, run)
