"""Training benchmarks (every LightGBM fit with an explicit ``num_threads``).

(a) Pruning: the same Optuna study (TPE, same seed, same SQLite storage as the product) with
    and without median pruning, each given the same compute budget (CPU seconds of this
    single-threaded process) on Telco and on a 50k-row synthetic table: trials finished and
    best valid AUC; then each study's best parameters refit and scored on test.
(b) Overhead: the whole train pipeline (ingest + validation, splits, features, tuning,
    scoring, evaluation, registry, model card, reference profile, W&B, Prefect) on a
    synthetic table, against the time spent inside ``lightgbm.train`` in that same run.
    Full mode: 1M rows under a real Prefect server; quick mode: 5k rows without orchestration.
(c) Tuned vs default on Telco, 5-fold stratified CV: per fold, the pipeline's tuning on the
    fold's training part (train/valid split inside it) against LightGBM defaults
    (``LGBMClassifier()``-equivalent: 100 rounds) trained on the whole training part.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any

import numpy as np

from bench.harness import (
    REPO,
    Stats,
    main,
    metric,
    scratch_dir,
    temporary_prefect_server,
    write_synthetic,
)

AREA = "training"
THREADS = 1
# Quick mode (``make test`` runs it) checks that each path runs and gives well-formed rows;
# its numbers mean nothing, so its inputs are as small as still exercise the path.
QUICK_BUDGET_S = 0.3  # CPU seconds per pruning study
QUICK_ROWS = 5_000  # overhead pipeline


def _telco():
    from schemas import load_dataset
    from tasks.ingest import parse, read, validate

    ds = load_dataset("telco")
    raw = read.read_table(REPO / "data" / "telco_churn.csv", ds)
    parsed = parse.parse_table(raw, ds)
    return ds, validate.split_rows(parsed, validate.validate_table(parsed, ds)).accepted


def _auc(y, s) -> float:
    from tasks.metrics import roc_auc

    return roc_auc(y, s)


# --- (a) pruning vs no pruning at equal compute -----------------------------------------


def _synthetic_frame(rows: int):
    from schemas import load_dataset
    from tasks.ingest import parse, read, validate

    csv, module = write_synthetic(scratch_dir(), rows=rows, cols=20, seed=1, name="synth_prune")
    ds = load_dataset(str(module))
    parsed = parse.parse_table(read.read_table(csv, ds), ds)
    return ds, validate.split_rows(parsed, validate.validate_table(parsed, ds)).accepted


def _pruning_rows(
    label: str, ds, frame, budget: float, seeds: list[int], quick: bool = False
) -> list[dict[str, Any]]:
    """Both studies get the same CPU-time budget, round-robin per seed. CPU time, not wall
    time: on this shared 2-core machine the wall clock of one study swings 3x with other
    processes' load; single-threaded, CPU time is what wall time is on an idle machine."""
    import optuna

    from tasks.features import FeatureSpec
    from tasks.settings import get_settings
    from tasks.training import fit, split, storage, tune
    from tasks.training.space import default_search_params

    fs = FeatureSpec.from_dataset(ds)
    url = get_settings().ensure_dirs().optuna_url
    optuna.get_all_study_names(storage=storage.open_storage(url))  # create the schema up front
    res: dict[bool, dict[str, list[float]]] = {
        p: {"trials": [], "valid": [], "test": []} for p in (True, False)
    }
    for seed in seeds:
        splits = split.split_data(frame, ds, seed=seed)
        train, valid, test = (split.to_xy(p, ds, fs) for p in splits)
        data = fit.FitData(train, valid, fs, task="binary", seed=seed, num_threads=THREADS)
        for pruning in (True, False):
            start = time.process_time()
            r = tune.tune(
                data, trials=100_000, timeout_s=None, storage=url, pruning=pruning,
                study_name=f"bench-{seed}-{pruning}-{time.time_ns()}",
                warm_params=[default_search_params()],
                should_stop=lambda start=start: time.process_time() - start > budget,
            )  # fmt: skip
            booster = fit.fit_booster(r.best_params, data)
            res[pruning]["trials"].append(r.n_trials)
            res[pruning]["valid"].append(r.best_value)
            res[pruning]["test"].append(_auc(test.y, fit.predict(booster, test.X)))
    on, off = res[True], res[False]
    ratio = Stats.of([a / b for a, b in zip(on["trials"], off["trials"], strict=True)])
    d_valid = Stats.of([a - b for a, b in zip(on["valid"], off["valid"], strict=True)])
    d_test = Stats.of([a - b for a, b in zip(on["test"], off["test"], strict=True)])
    setup = f"{label}, {budget:g} s CPU per study, seeds {seeds}, median pruner, SQLite, 1 thread"
    return [
        metric(AREA, f"{label}: trials finished, pruning ÷ none (equal compute)", None, "x",
               target=None if quick else "≥ 1.5 x", stats=ratio,
               note=f"{setup}; trials with pruning {on['trials']}, without {off['trials']}"),
        metric(AREA, f"{label}: best valid AUC, pruning − none", None, "AUC",
               target=None if quick else "≥ -0.002 AUC", stats=d_valid,
               note=f"valid AUC with {[round(v, 4) for v in on['valid']]}, "
                    f"without {[round(v, 4) for v in off['valid']]} (target: equal within 0.002)"),
        metric(AREA, f"{label}: test AUC of the refit best, pruning − none", None, "AUC",
               stats=d_test,
               note=f"test AUC with {[round(v, 4) for v in on['test']]}, "
                    f"without {[round(v, 4) for v in off['test']]}"),
    ]  # fmt: skip


def bench_pruning(quick: bool) -> list[dict[str, Any]]:
    rows = _pruning_rows("Telco", *_telco(), budget=QUICK_BUDGET_S if quick else 30.0,
                         seeds=[0] if quick else [0, 1, 2], quick=quick)  # fmt: skip
    if not quick:  # where boosting, not per-trial bookkeeping, dominates a trial
        rows += _pruning_rows("synthetic 50k rows", *_synthetic_frame(50_000), budget=30.0,
                              seeds=[0, 1])  # fmt: skip
    return rows


# --- (b) pipeline overhead over pure LightGBM time -----------------------------------------


@contextmanager
def _time_lightgbm():
    """Accumulate the wall time spent inside ``lightgbm.train`` (the pure training time)."""
    import lightgbm

    spent = {"s": 0.0, "fits": 0}
    real = lightgbm.train

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            spent["s"] += time.perf_counter() - t0
            spent["fits"] += 1

    lightgbm.train = timed
    try:
        yield spent
    finally:
        lightgbm.train = real


@contextmanager
def _timed_steps(times: dict[str, float], orchestrated: bool):
    """The train flow's tasks, each accumulating its wall time into ``times`` (keyed by task
    name): as Prefect tasks when ``orchestrated``, else as the plain functions they wrap."""
    from prefect import Task, task
    from prefect.cache_policies import NO_CACHE

    import flows.train as module

    def wrap(name, fn):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                times[name] = times.get(name, 0.0) + time.perf_counter() - t0

        timed.__name__ = fn.__name__
        return timed

    saved = {k: v for k, v in vars(module).items() if isinstance(v, Task)}
    for attr, step in saved.items():
        timed = wrap(step.name, step.fn)
        setattr(module, attr, task(timed, name=step.name, cache_policy=NO_CACHE) if orchestrated
                else timed)  # fmt: skip
    try:
        yield
    finally:
        for attr, step in saved.items():
            setattr(module, attr, step)


@contextmanager
def _time_helpers(times: dict[str, float]):
    """Also time the plain helpers the flow calls between its steps (scoring, W&B)."""
    from tasks import tracking
    from tasks.training import model, split

    targets = [(model, "score_splits"), (split, "split_data"), (tracking, "start_run"),
               (tracking.Tracker, "log_model"), (tracking.Tracker, "finish")]  # fmt: skip
    saved = [(owner, name, getattr(owner, name)) for owner, name in targets]
    for owner, name, fn in saved:

        def timed(*args, _fn=fn, _name=name, **kwargs):
            t0 = time.perf_counter()
            try:
                return _fn(*args, **kwargs)
            finally:
                times[_name] = times.get(_name, 0.0) + time.perf_counter() - t0

        setattr(owner, name, timed)
    try:
        yield
    finally:
        for owner, name, fn in saved:
            setattr(owner, name, fn)


def bench_overhead(quick: bool) -> list[dict[str, Any]]:
    from flows.train import TrainConfig
    from flows.train import train as train_flow

    rows = QUICK_ROWS if quick else 1_000_000
    csv, module = write_synthetic(scratch_dir(), rows=rows, cols=20, seed=0, name="synth_train")
    config = TrainConfig(
        dataset=str(module), data=str(csv), trials=2, num_threads=THREADS, seed=0,
        value_retained=100.0, offer_cost=10.0, offer_success_rate=0.3, fail_on_quality=False,
    )  # fmt: skip
    steps: dict[str, float] = {}
    with _time_lightgbm() as spent, _time_helpers(steps), _timed_steps(steps, not quick):
        if quick:
            t0 = time.perf_counter()
            out = train_flow.fn(config=config)  # the flow's body, without Prefect
            how = "plain steps (no Prefect), W&B disabled"
        else:
            with temporary_prefect_server():
                t0 = time.perf_counter()  # server start-up is infrastructure, not per run
                out = train_flow(config=config)
            how = "Prefect flow on a real server (start-up excluded), W&B offline"
        wall = time.perf_counter() - t0
    lgb_s = spent["s"]
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in steps.items())
    # The overhead: validation + profiling + tracking + orchestration. Orchestration is
    # everything no step accounts for (Prefect's task/flow runs, glue). Not overhead: the model
    # work a plain LightGBM script does too (splitting, Optuna's bookkeeping inside `train`,
    # predicting the splits, computing metrics) -- shown, and counted in the strict row below.
    g = steps.get
    validation, profiling = g("ingest", 0.0), g("profile", 0.0)
    tracking = g("start_run", 0.0) + g("log_model", 0.0) + g("finish", 0.0) + g("register", 0.0)
    orchestration = wall - sum(steps.values())
    overhead = validation + profiling + tracking + orchestration
    model_work = g("split_data", 0.0) + g("tune_and_fit", 0.0) - lgb_s + g("score_splits", 0.0)
    model_work += g("evaluate", 0.0)
    common = (f"{how}; wall {wall:.1f} s, inside lightgbm.train {lgb_s:.1f} s over "
              f"{spent['fits']} fits (2 trials + refit + untuned baseline); test AUC "
              f"{out['metrics']['roc_auc']:.3f}")  # fmt: skip
    return [
        metric(AREA, f"pipeline overhead ÷ LightGBM training time, {rows:,} rows",
               overhead / lgb_s * 100, "%", target="≤ 15 %" if not quick else None,
               note=f"validation (ingest) {validation:.1f} s + profiling {profiling:.1f} s + "
                    f"tracking and registry {tracking:.1f} s + orchestration (wall minus every "
                    f"step) {orchestration:.1f} s = {overhead:.1f} s; not counted: model work "
                    f"outside lightgbm.train {model_work:.1f} s (split, Optuna, predicting the "
                    f"splits, metrics); {common}"),
        metric(AREA, f"everything but lightgbm.train ÷ LightGBM training time, {rows:,} rows",
               (wall - lgb_s) / lgb_s * 100, "%",
               note=f"strict reading: the model work above counted as overhead too; parts "
                    f"(train incl. its LightGBM time): {parts}; {common}"),
    ]  # fmt: skip


# --- (c) tuned vs default on Telco, 5-fold CV ----------------------------------------------


def bench_tuned_vs_default(quick: bool) -> list[dict[str, Any]]:
    from tasks.evaluate import label_vector
    from tasks.features import FeatureSpec
    from tasks.settings import get_settings
    from tasks.training import fit, split, tune
    from tasks.training.space import default_search_params

    ds, frame = _telco()
    fs = FeatureSpec.from_dataset(ds)
    folds, trials = (2, 2) if quick else (5, 50)
    y_all = label_vector(frame, ds)
    rng = np.random.default_rng(0)
    fold_of = np.empty(len(y_all), dtype=int)
    for cls in (0.0, 1.0):  # stratified folds
        idx = rng.permutation(np.flatnonzero(y_all == cls))
        fold_of[idx] = np.arange(len(idx)) % 5
    url = get_settings().ensure_dirs().optuna_url
    tuned, default = [], []
    for k in range(folds):
        test_rows, rest = frame.filter(fold_of == k), frame.filter(fold_of != k)
        inner = split.split_data(rest, ds, seed=k, valid_fraction=0.25, test_fraction=0.0)
        train, valid = split.to_xy(inner.train, ds, fs), split.to_xy(inner.valid, ds, fs)
        test, whole = split.to_xy(test_rows, ds, fs), split.to_xy(rest, ds, fs)
        data = fit.FitData(train, valid, fs, task="binary", seed=k, num_threads=THREADS)
        r = tune.tune(
            data, trials=trials, timeout_s=None, storage=url,
            study_name=f"bench-cv-{k}-{time.time_ns()}", warm_params=[default_search_params()],
        )  # fmt: skip
        best = fit.fit_booster(r.best_params, data)
        base = fit.fit_default(
            fit.FitData(whole, valid, fs, task="binary", seed=k, num_threads=THREADS)
        )
        tuned.append(_auc(test.y, fit.predict(best, test.X)))
        default.append(_auc(test.y, fit.predict(base, test.X)))
    deltas = [a - b for a, b in zip(tuned, default, strict=True)]
    delta, t, d = Stats.of(deltas), Stats.of(tuned), Stats.of(default)
    paired_sd = float(np.std(deltas, ddof=1)) if len(deltas) > 1 else float("nan")
    wins = sum(x > 0 for x in deltas)
    sd = float(np.std(default, ddof=1)) if len(default) > 1 else float("nan")
    t_sd = float(np.std(tuned, ddof=1)) if len(tuned) > 1 else float("nan")
    return [
        metric(AREA, "tuned − default test AUC on Telco (CV folds)", None, "AUC",
               target=f"≥ {sd:.4f} AUC" if not quick else None, stats=delta,
               note=f"{folds} folds x {trials} trials; target = the default's fold SD; "
                    f"mean delta {np.mean(deltas):.4f}, paired SD {paired_sd:.4f}, tuned ahead "
                    f"in {wins} of {folds} folds; per fold tuned {[round(v, 4) for v in tuned]}, "
                    f"default {[round(v, 4) for v in default]}"),
        metric(AREA, "tuned test AUC on Telco (CV folds)", None, "AUC", stats=t,
               note=f"mean {np.mean(tuned):.4f} ± {t_sd:.4f} (SD)"),
        metric(AREA, "default LightGBM test AUC on Telco (CV folds)", None, "AUC", stats=d,
               note=f"mean {np.mean(default):.4f} ± {sd:.4f} (SD); trained on train+valid"),
    ]  # fmt: skip


def run(quick: bool) -> list[dict[str, Any]]:
    return [*bench_pruning(quick), *bench_overhead(quick), *bench_tuned_vs_default(quick)]


if __name__ == "__main__":
    main(AREA, run)
