"""The Prefect UI, looked at in a real headless Chromium: a stack with the UI on runs the loop
(ingest, train, score, monitor, retrain: real flows against the stack's API), then the browser
opens the retrain's flow-run page and its artifacts and finds what the runs reported.

Screenshots of the pages land in this test's output folder (printed), or in
``DRIFTLOOP_UI_SCREENSHOTS`` when set (how docs/img/ was made).
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from driftloop.prefect_api import use_api
from driftloop.stack import LocalStack, StackConfig
from tests.flows._stack_fixtures import START, flipped_labels, write_traffic
from tests.support.artifacts import latest_artifacts
from tests.support.browser import click_tab, headless_chromium, wait_for_text
from tests.support.homes import N_REFERENCE, settings_at
from tests.support.telco import telco_rows

N_RECENT = 1500


@pytest.fixture
def ui_stack(tmp_path_factory):
    """A Prefect server with its UI (no deployments, no worker: the flows run here)."""
    home = tmp_path_factory.mktemp("ui-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DRIFTLOOP_HOME", str(home))
        stack = LocalStack(settings_at(home), StackConfig(deploy=False, worker=False,
                                                          scheduler=False, ui=True))  # fmt: skip
        stack.up()
        try:
            with use_api(stack.api_url):
                yield stack
        finally:
            stack.down()


def run_the_loop(stack: LocalStack) -> dict[str, str]:
    """Ingest + train a champion, score a batch, log traffic whose labels drifted, monitor it,
    retrain; returns the flow-run ids by flow."""
    from flows.ingest import IngestConfig, ingest
    from flows.monitor import MonitorConfig, monitor
    from flows.retrain import RetrainConfig, RetrainTrigger, retrain
    from flows.score import ScoreConfig, score
    from flows.train import TrainConfig, train
    from tasks import registry

    settings, rows = stack.settings, telco_rows()
    reference = settings.root / "reference.parquet"
    rows.head(N_REFERENCE).write_parquet(reference)
    runs = {}
    for name, flow, config in [
        ("ingest", ingest, IngestConfig(path=str(reference))),
        ("train", train, TrainConfig(data=str(reference), trials=1, alias="champion")),
    ]:
        runs[name] = str(flow(config, return_state=True).state_details.flow_run_id)
    recent = rows.slice(N_REFERENCE, N_RECENT)
    champion = registry.load_model("telco:champion", settings)
    write_traffic(settings, champion, recent, flipped_labels(recent))
    batch = settings.root / "batch.csv"
    recent.head(200).drop("Churn").write_csv(batch)
    score(ScoreConfig(path=str(batch), out=str(settings.root / "scores.parquet")))
    until = START + timedelta(minutes=N_RECENT)
    monitor(MonitorConfig(until=until, window_minutes=N_RECENT))
    state = retrain(
        config=RetrainConfig(trials=1, timeout_s=60, min_rows=100),
        trigger=RetrainTrigger(
            reason="performance",
            event="driftloop.performance.degraded",
            evidence={"auc": 0.41, "champion_auc": 0.84},
        ),  # fmt: skip
        return_state=True,
    )
    runs["retrain"] = str(state.state_details.flow_run_id)
    return runs


@pytest.mark.timeout(180)
def test_the_ui_shows_the_runs_and_their_artifacts(ui_stack, tmp_path):
    started = time.monotonic()
    runs = run_the_loop(ui_stack)
    looped = time.monotonic()
    found = latest_artifacts("retrain-telco", "monitor-telco", "train-telco", "ingest-telco",
                             "score-telco")  # fmt: skip
    assert len(found) == 5, sorted(found)
    shots = Path(os.environ.get("DRIFTLOOP_UI_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    ui = ui_stack.api_url.removesuffix("/api")
    with headless_chromium() as browser:
        browser.get(f"{ui}/runs/flow-run/{runs['retrain']}")
        wait_for_text(browser, "retrain", "Completed", "Artifacts")
        click_tab(browser, "artifacts")
        wait_for_text(browser, "retrain-telco", "retrain-telco-slices")
        browser.save_screenshot(str(shots / "prefect-flow-run.png"))

        browser.get(f"{ui}/artifacts/artifact/{found['retrain-telco'].latest_id}")
        text = wait_for_text(browser, "Retrain: challenger", "Champion before", "Gate")
        assert "paired-bootstrap lower bound" in text and "Trigger: performance" in text
        browser.save_screenshot(str(shots / "prefect-artifact.png"))

        browser.get(f"{ui}/artifacts/artifact/{found['monitor-telco'].latest_id}")
        text = wait_for_text(browser, "Monitor: telco", "Drift score", "Report")
        assert f"{N_RECENT} rows" in text
        browser.save_screenshot(str(shots / "prefect-monitor-artifact.png"))

        browser.get(f"{ui}/runs/flow-run/{runs['ingest']}")
        click_tab(browser, "artifacts")
        wait_for_text(browser, "ingest-telco", "ingest-telco-report")

        # the monitor's HTML report, from its link artifact: pictures drawn offline (inline SVG)
        report = next(Path(ui_stack.settings.reports_dir / "monitor").glob("*.html"))
        assert report.as_uri() in found["monitor-telco"].data
        browser.get(report.as_uri())
        wait_for_text(browser, "Monitor report: telco", "Score distribution")
        assert len(browser.find_elements("css selector", "svg")) >= 2
        browser.save_screenshot(str(shots / "monitor-report.png"))
    print(f"\nloop {looped - started:.0f} s, browser {time.monotonic() - looped:.0f} s; "
          f"screenshots: {shots}")  # fmt: skip
    for name in ("prefect-flow-run", "prefect-artifact", "prefect-monitor-artifact",
                 "monitor-report"):  # fmt: skip
        assert (shots / f"{name}.png").stat().st_size > 10_000, name
    assert pl.read_parquet(ui_stack.settings.root / "scores.parquet").height == 200
