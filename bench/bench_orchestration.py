"""Orchestration tax: what Prefect adds per flow run and per task, against the work it wraps.

Measured in one run, side by side (round-robin rounds), against calling the same functions
directly, on a real temporary Prefect server (SQLite):

* the fixed cost of a flow run (a flow that does nothing vs. a direct no-op call);
* the cost of one task call (a flow of ``TASKS_PER_FLOW`` no-op tasks vs. the empty flow);
* driftloop's own ingest flow (``flows.ingest.ingest``) vs.
  ``tasks.ingest.compose.ingest_file`` (the same steps, no Prefect) on the shipped Telco CSV;
* a three-task training pipeline (split -> fit -> predict, the functions of ``tasks.training``)
  as a flow vs. the same calls, at two data sizes: the tax shrinks as the work grows.

Issue 7 sets no target for these ratios; they are reported next to the work they wrap.
Quick mode starts no server: it times the direct calls only (the harness check).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench import harness
from bench.harness import metric, quick_skip

AREA = "orchestration"
TASKS_PER_FLOW = 50
PIPELINE_ROWS = (10_000, 100_000)
QUICK_ROWS = 2_000
REPEATS = 7
NOOP_REPEATS = 11
SEED = 7
NO_TARGET = "issue 7 sets no target for this ratio"


def _telco_csv():
    return harness.REPO / "data" / "telco_churn.csv"


def _pipeline(rows: int) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
    """split -> fit (LightGBM defaults, 1 thread) -> predict on a synthetic table."""
    from tasks.features import FeatureSpec
    from tasks.training import fit as training_fit
    from tasks.training import split as training_split

    module = harness.scratch_dir() / f"orch_{rows}.py"
    module.write_text(harness.synthetic_schema_source(20, f"orch_{rows}"))
    from schemas import load_dataset

    dataset = load_dataset(str(module))
    frame = harness.synthetic_table(rows, 20, SEED)
    features = FeatureSpec.from_dataset(dataset)

    def split() -> Any:
        splits = training_split.split_data(frame, dataset, seed=SEED)
        xy = [training_split.to_xy(s, dataset, features) for s in splits]
        return xy

    def fit(xy: Any) -> Any:
        data = training_fit.FitData(xy[0], xy[1], features, task="binary", seed=SEED, num_threads=1)
        return training_fit.fit_default(data)

    def predict(booster: Any, xy: Any) -> Any:
        return training_fit.predict(booster, xy[2].X, num_threads=1)

    return split, fit, predict


def _direct_pipeline(steps) -> Callable[[], Any]:
    split, fit, predict = steps

    def run() -> Any:
        xy = split()
        return predict(fit(xy), xy)

    return run


def _flow_pipeline(steps) -> Callable[[], Any]:
    from prefect import flow, task

    split, fit, predict = (task(fn, name=fn.__name__) for fn in steps)

    @flow(name="bench-pipeline")
    def pipeline() -> Any:
        xy = split()
        return predict(fit(xy), xy)

    return pipeline


def _noop() -> None:
    return None


def _without_heartbeats(fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` run with Prefect's flow-run heartbeat thread switched off."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    def run() -> Any:
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            return fn()

    return run


def _noop_flows() -> tuple[Callable[[], Any], Callable[[], Any]]:
    from prefect import flow, task

    noop_task = task(_noop, name="noop")

    @flow(name="bench-empty")
    def empty() -> None:
        return None

    @flow(name="bench-tasks")
    def with_tasks() -> None:
        for _ in range(TASKS_PER_FLOW):
            noop_task()

    return empty, with_tasks


def _diff(a: harness.Stats, b: harness.Stats, scale: float = 1.0) -> harness.Stats:
    """Per-round difference ``(a - b) * scale`` of two side-by-side measurements."""
    return harness.Stats.of([(x - y) * scale for x, y in zip(a.samples, b.samples, strict=True)])


def _ingest_pair() -> tuple[Callable[[], Any], Callable[[], Any]]:
    from flows.ingest import IngestConfig, ingest
    from schemas import load_dataset
    from tasks.ingest.compose import ingest_file

    csv = _telco_csv()
    dataset = load_dataset("telco")
    config = IngestConfig(path=str(csv), dataset="telco", fail_on_quality=False)
    return (lambda: ingest_file(csv, dataset)), (lambda: ingest(config))


def _measure_fixed_costs(n: int) -> list[dict[str, Any]]:
    empty, with_tasks = _noop_flows()
    peers = {
        "direct": _noop,
        "empty": empty,
        "empty_no_heartbeat": _without_heartbeats(empty),
        "tasks_no_heartbeat": _without_heartbeats(with_tasks),
    }
    t = harness.compare(peers, n, warmup=1)
    flow_cost = _diff(t["empty"], t["direct"])
    no_heartbeat = _diff(t["empty_no_heartbeat"], t["direct"])
    # Per task: both flows without the heartbeat join, whose 0-1 s wait would drown 50 tasks.
    task_cost = _diff(t["tasks_no_heartbeat"], t["empty_no_heartbeat"], 1000.0 / TASKS_PER_FLOW)
    return [
        metric(AREA, "flow run fixed cost (empty flow − direct call)", None, "s",
               stats=flow_cost, note=f"Prefect defaults; {NO_TARGET}"),
        metric(AREA, "flow run fixed cost, heartbeats off", None, "s", stats=no_heartbeat,
               note="PREFECT_FLOWS_HEARTBEAT_FREQUENCY unset, same rounds: the rest of the "
               "default cost is the join of the heartbeat thread, which sleeps in 1 s steps"),
        metric(AREA, "task call cost (per no-op task in a flow)", None, "ms", stats=task_cost,
               note=f"{TASKS_PER_FLOW} no-op tasks per flow minus the empty flow, both with "
               f"heartbeats off (the heartbeat join adds 0-1 s of noise per run); {NO_TARGET}"),
    ]  # fmt: skip


def _measure_ingest(n: int) -> list[dict[str, Any]]:
    direct, flowed = _ingest_pair()
    t = harness.compare({"direct": direct, "flow": flowed}, n, warmup=1)
    return [
        metric(AREA, "ingest flow ÷ ingest_file, Telco 7,043 rows", None, "×",
               stats=harness.ratio(t["flow"], t["direct"]),
               note=f"direct {t['direct'].median:.3f} s, flow {t['flow'].median:.3f} s "
               f"(2 tasks + 6 plain calls); {NO_TARGET}"),
    ]  # fmt: skip


def _measure_pipeline(rows: int, n: int) -> list[dict[str, Any]]:
    steps = _pipeline(rows)
    t = harness.compare(
        {"direct": _direct_pipeline(steps), "flow": _flow_pipeline(steps)}, n, warmup=1
    )
    tax = _diff(t["flow"], t["direct"])
    return [
        metric(AREA, f"train pipeline flow ÷ direct calls, {rows:,} rows", None, "×",
               stats=harness.ratio(t["flow"], t["direct"]),
               note=f"direct {t['direct'].median:.3f} s, flow {t['flow'].median:.3f} s; "
               f"Prefect adds {tax.median:.3f} s (one flow run + 3 tasks: split, fit, "
               f"predict); {NO_TARGET}"),
    ]  # fmt: skip


def run(quick: bool) -> list[dict[str, Any]]:
    if quick:
        direct, _ = _ingest_pair()
        ingest = harness.repeat(direct, 1)
        pipeline = harness.repeat(_direct_pipeline(_pipeline(QUICK_ROWS)), 1)
        why = "it starts no Prefect server (full run only)"
        return [
            metric(AREA, "direct ingest_file, Telco (no Prefect)", None, "s", stats=ingest),
            metric(AREA, f"direct train pipeline, {QUICK_ROWS:,} rows (no Prefect)", None, "s",
                   stats=pipeline),
            quick_skip(AREA, "flow run fixed cost (empty flow − direct call)", "s", why),
            quick_skip(AREA, "task call cost (per no-op task in a flow)", "ms", why),
        ]  # fmt: skip
    rows: list[dict[str, Any]] = []
    with harness.temporary_prefect_server():
        rows += _measure_fixed_costs(NOOP_REPEATS)
        rows += _measure_ingest(REPEATS)
        for size in PIPELINE_ROWS:
            rows += _measure_pipeline(size, REPEATS if size <= 10_000 else 5)
    return rows


if __name__ == "__main__":
    harness.main(AREA, run)
