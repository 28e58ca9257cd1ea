"""The retrain flow for real (Prefect server, train subflow, registry, gate, events):
a challenger trained on concept-drifted feedback beats the champion on the newest labels and
is promoted; one trained on pure-noise labels is rejected and the champion stays. Plus the pure
data-assembly steps (label mapping, holdout, strategies)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import polars as pl
import pytest
from _stack_fixtures import DS, champion_world, flipped_labels, noise_labels, write_traffic

from flows.retrain import RetrainConfig, RetrainTrigger, retrain
from tasks import events, registry
from tasks import retrain as rt
from tasks.gate import GateConfig
from tests.support.artifacts import latest_artifacts, table_rows
from tests.support.homes import N_REFERENCE
from tests.support.telco import telco_rows

N_RECENT = 1500
HOLDOUT = 0.3


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A home with a champion (real snapshot) and the telco rows after its training data."""
    with champion_world(tmp_path_factory, "retrain-home") as w:
        yield w.settings, w.champion, w.rows.slice(N_REFERENCE, N_RECENT)


def _config(**kw) -> RetrainConfig:
    base = dict(
        trials=2, timeout_s=60, min_rows=100, holdout_fraction=HOLDOUT, min_holdout_rows=50,
        gate=GateConfig(margin=0.08, max_slice_regression=0.1),
    )  # fmt: skip
    return RetrainConfig(**{**base, **kw})


def _outbox(settings, event: str) -> list[dict]:
    records = events.pending_events(settings) + events.sent_events(settings)
    return [r for r in records if r["event"] == event]


def test_noise_labels_challenger_is_rejected_and_champion_stays(world, prefect_harness):
    settings, champion, recent = world
    write_traffic(settings, champion, recent, noise_labels(recent))
    trigger = RetrainTrigger(reason="performance", event=events.PERFORMANCE_DEGRADED)
    result = retrain(config=_config(strategy="full_refit"), trigger=trigger)

    assert result["promote"] is False
    assert result["champion_tag"] == champion.tag
    assert result["challenger_tag"] not in (None, champion.tag)
    assert result["challenger_score"] is not None and result["champion_score"] is not None
    assert result["challenger_score"] < result["champion_score"] + 0.08
    assert registry.get_alias("telco", registry.CHAMPION, settings) == champion.tag
    assert registry.get_alias("telco", registry.CHALLENGER, settings) is None  # loser cleared
    assert result["n_holdout"] == round(N_RECENT * HOLDOUT)
    assert result["n_reference"] == N_REFERENCE and result["trigger"]["reason"] == "performance"
    (rejected,) = _outbox(settings, events.MODEL_REJECTED)
    assert rejected["id"] == result["event_id"]
    assert rejected["payload"]["champion_score"] == result["champion_score"]
    assert rejected["payload"]["challenger_score"] == result["challenger_score"]
    assert _outbox(settings, events.MODEL_PROMOTED) == []


def test_drifted_challenger_wins_is_promoted_and_alias_moves(world, prefect_harness):
    settings, champion, recent = world
    write_traffic(settings, champion, recent, flipped_labels(recent))
    before = len(registry.read_index(settings)["telco"]["history"])
    trigger = RetrainTrigger(
        reason="drift", event=events.DRIFT_DETECTED, evidence={"drift_share": 0.6}
    )
    config = _config(strategy="sliding_window", window_rows=1300)
    result = retrain(config=config, trigger=trigger)

    assert result["promote"] is True, result["reason"]
    assert result["challenger_score"] > result["champion_score"] + 0.08
    new = result["challenger_tag"]
    assert registry.get_alias("telco", registry.CHAMPION, settings) == new != champion.tag
    assert result["champion_after"] == new
    moves = registry.read_index(settings)["telco"]["history"][before:]
    assert {"alias": "champion", "from": champion.tag, "to": new} in [
        {k: m[k] for k in ("alias", "from", "to")} for m in moves
    ]
    n_train = round(N_RECENT * (1 - HOLDOUT))
    assert result["n_feedback"] == n_train and result["n_reference"] == 1300 - n_train
    (promoted,) = _outbox(settings, events.MODEL_PROMOTED)
    assert promoted["payload"]["challenger_tag"] == new
    assert promoted["payload"]["champion_score"] == result["champion_score"]

    # the UI: summary (trigger, gate with its interval, champion before/after) + slice table
    found = latest_artifacts("retrain-telco", "retrain-telco-slices")
    summary, slices = found["retrain-telco"], found["retrain-telco-slices"]
    assert (summary.type, slices.type) == ("markdown", "table")
    body = summary.data
    assert "challenger PROMOTED" in body and f"Champion before: `{champion.tag}`" in body
    assert f"data version `{champion.metadata['data_version']}`" in body
    assert f"after: `{new}`" in body and f"Model `{new}`" in body
    assert "**Trigger**: drift" in body and "drift_share: 0.6" in body
    assert f"challenger {result['challenger_score']:.4g}" in body
    assert f"lower bound {result['improvement_low']:.4g}" in body
    rows = table_rows(slices)
    assert rows and {r["column"] for r in rows} <= set(DS.segment_columns)
    assert all(r["rows"] >= GateConfig().min_slice_rows for r in rows)

    # the gate's rows (the newest labeled ones) were never in the challenger's training file
    holdout_ids = set(recent.tail(result["n_holdout"])[DS.id_column].to_list())
    (train_file,) = sorted(settings.retrain_dir.glob("*.parquet"))[-1:]
    trained_ids = set(pl.read_parquet(train_file)[DS.id_column].to_list())
    assert trained_ids and not (trained_ids & holdout_ids)


# --- the data steps, pure ----------------------------------------------------------------


def _joined(rows: pl.DataFrame, labels: list[float]) -> pl.DataFrame:
    ts = [datetime(2026, 1, 1, 0, i, tzinfo=UTC) for i in range(rows.height)]
    return rows.drop(DS.target).with_columns(
        pl.Series("label", labels, dtype=pl.Float64), pl.Series("ts", ts)
    )


def test_labels_map_back_to_target_values_and_holdout_is_newest():
    rows = telco_rows().head(10)
    labeled = rt.labeled_feedback(_joined(rows, [1.0, 0.0] * 5), DS)
    assert labeled[DS.target].to_list() == ["Yes", "No"] * 5
    split = rt.split_holdout(labeled, fraction=0.3, min_rows=2)
    assert split.holdout[DS.id_column].to_list() == rows[DS.id_column].to_list()[-3:]
    assert split.train.height == 7 and "_ts" not in split.train.columns
    with pytest.raises(rt.RetrainDataError, match="only 10 labeled"):
        rt.split_holdout(labeled, fraction=0.3, min_rows=11)
    with pytest.raises(rt.RetrainDataError, match="0 or 1"):
        rt.labeled_feedback(_joined(rows, [0.5] * 10), DS)


def test_strategies_and_entity_dedup():
    rows = telco_rows()
    reference, fresh = rows.head(100), rows.slice(100, 20)
    holdout = rows.slice(120, 5)
    # the same customers as 3 reference rows show up again in feedback: the newer row wins
    again = reference.head(3).with_columns(pl.lit("Yes").alias(DS.target))
    feedback = pl.concat([fresh, again])
    full = rt.assemble(reference, feedback, holdout, DS, strategy="full_refit", window_rows=50)
    assert (full.n_reference, full.n_feedback, full.frame.height) == (97, 23, 120)
    assert full.frame[DS.id_column].n_unique() == 120
    window = rt.assemble(
        reference, feedback, holdout, DS, strategy="sliding_window", window_rows=50
    )
    assert (window.n_reference, window.n_feedback) == (27, 23)
    assert window.frame.tail(23)[DS.id_column].to_list() == feedback[DS.id_column].to_list()
    warm = rt.assemble(reference, feedback, holdout, DS, strategy="warm_start", window_rows=50)
    assert warm.frame.equals(window.frame)


def test_cli_retrain_json_is_one_object(world, prefect_harness):
    import json

    from typer.testing import CliRunner

    from driftloop.cli import build_app

    settings, _, recent = world
    champion = registry.load_model("telco:champion", settings)
    write_traffic(settings, champion, recent, noise_labels(recent, seed=1))
    args = ["retrain", "--json", "--trials", "1", "--margin", "0.08", "--reason", "cli"]
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["promote"] is False and out["trigger"]["reason"] == "cli"
    assert out["champion_tag"] == champion.tag and out["challenger_score"] is not None
    bad = CliRunner().invoke(build_app(), ["retrain", "--json", "--strategy", "nope"])
    assert bad.exit_code == 1 and "strategy" in bad.stderr and bad.stdout == ""


def test_gate_config_is_the_flow_config_and_outcome_goes_to_the_given_emitter():
    from tasks.gate import GateDecision

    assert RetrainConfig().gate == GateConfig()  # one set of defaults
    sent: list[tuple[str, str, dict]] = []

    class Fake:
        def emit_model_promoted(self, name, evidence):
            sent.append(("promoted", name, evidence))
            return "id-p"

        def emit_model_rejected(self, name, evidence):
            sent.append(("rejected", name, evidence))
            return "id-r"

    lost = GateDecision(False, "no gain", "roc_auc", 0.8, 0.79, -0.01, 0.005, 0.05, 100)
    out = rt.emit_outcome("telco", lost, {"promote": False}, Fake())
    assert out == {"promote": False, "event_id": "id-r"}
    assert sent == [("rejected", "telco", {"promote": False})]


def test_too_few_labels_or_a_report_only_event_completes_without_training():
    """A scheduled retrain in a quiet week, or an event the monitor sent without asking for a
    retrain, is a completed run with its reason, never a failure (tasks.retrain.skip_reason)."""
    few, enough, rule = pl.DataFrame({"x": range(40)}), pl.DataFrame({"x": range(400)}), _config()
    why = rt.skip_reason(evidence={}, labeled=few, holdout=rule)
    assert why is not None and "only 40 labeled feedback rows" in why
    assert rt.skip_reason(evidence={}, labeled=enough, holdout=rule) is None
    quiet = rt.skip_reason(evidence={"retrain": False, "reason": "drift score 0.4 (reported)"},
                           labeled=enough, holdout=rule)  # fmt: skip
    assert quiet is not None and "without asking for a retrain" in quiet
    running = SimpleNamespace(id="ab12", mode="canary", challenger="t:v3", champion="t:v2")
    busy = rt.skip_reason(evidence={}, labeled=enough, holdout=rule, experiment=running)
    assert busy is not None and busy.startswith("rollout ab12 (canary of t:v3 against t:v2)")


def test_retrain_flow_skips_with_its_reason(world, prefect_harness):
    settings, champion, recent = world
    for folder in (settings.predictions_dir, settings.feedback_dir):
        for old in folder.glob("*.parquet"):
            old.unlink()
    before = registry.resolve("telco:champion", settings)
    out = retrain(config=_config(), trigger=RetrainTrigger(reason="scheduled"))
    assert out["skipped"] is True and out["promote"] is False
    assert "labeled feedback rows" in out["reason"] and out["champion_after"] == before
    assert out["trigger"]["reason"] == "scheduled" and "evidence" not in out["trigger"]
    report_only = RetrainTrigger(reason="drift", evidence={"retrain": False})
    out = retrain(config=_config(), trigger=report_only)
    assert out["skipped"] is True and "without asking for a retrain" in out["reason"]
    assert registry.resolve("telco:champion", settings) == before
