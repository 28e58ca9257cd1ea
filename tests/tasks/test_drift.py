"""tasks.drift: statistics on synthetic frames with known shifts, false alarms, the decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from tasks import drift
from tasks.drift import DriftConfig
from tasks.monitoring.state import MonitorState

NUMERIC = ["n0", "n1", "n2", "n3", "n4"]
CATEGORICAL = ["c0", "c1", "c2"]
CATS = ["a", "b", "c", "d"]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _frame(n: int, rng: np.random.Generator, *, shift: float = 0.0, reweight=None) -> pl.DataFrame:
    cols: dict[str, object] = {c: rng.normal(size=n) for c in NUMERIC}
    cols["n0"] = rng.normal(loc=shift, size=n)
    cols["n4"] = rng.integers(0, 10, n)  # discrete numeric (ties)
    for c in CATEGORICAL:
        cols[c] = rng.choice(CATS, n)
    cols["c0"] = rng.choice(CATS, n, p=reweight or [0.25] * 4)
    return pl.DataFrame(cols)


def _drift(ref, cur, config=None, importance=None):
    return drift.compute_drift(
        ref, cur, numeric=NUMERIC, categorical=CATEGORICAL, importance=importance,
        config=config or DriftConfig(),
    )  # fmt: skip


@pytest.mark.parametrize("rows, mode", [(500, "tests"), (5_000, "distances")])
def test_shifted_numeric_is_detected(rows, mode):
    rng = np.random.default_rng(1)
    res = _drift(_frame(5_000, rng), _frame(rows, rng, shift=0.5))
    assert res.mode == mode
    assert res.drifted_features == ["n0"]
    n0 = res.features[0]
    assert n0.method == ("ks" if mode == "tests" else "wasserstein")
    assert n0.wasserstein > 0.3 and n0.psi > 0.1 and n0.hellinger > 0.1
    if mode == "tests":
        assert n0.p_adjusted < 1e-6 and n0.p_adjusted >= n0.p_value


@pytest.mark.parametrize("rows, mode", [(500, "tests"), (5_000, "distances")])
def test_reweighted_categorical_is_detected(rows, mode):
    rng = np.random.default_rng(2)
    res = _drift(_frame(5_000, rng), _frame(rows, rng, reweight=[0.55, 0.15, 0.15, 0.15]))
    assert res.drifted_features == ["c0"]
    c0 = next(f for f in res.features if f.feature == "c0")
    assert c0.method == ("chi2" if mode == "tests" else "jensen_shannon")
    assert c0.wasserstein is None and c0.jensen_shannon > 0.1


def test_identical_distributions_stay_quiet_over_100_draws():
    """BH at alpha=0.05 bounds the share of windows with any false flag near 5%."""
    config = DriftConfig(alpha=0.05)
    rng = np.random.default_rng(3)
    ref = _frame(5_000, rng)
    any_flag = fired = 0
    for seed in range(100):
        res = _drift(ref, _frame(400, np.random.default_rng(1_000 + seed)), config)
        any_flag += bool(res.drifted_features)
        fired += res.drifting
    assert any_flag <= 10, any_flag  # expected ~5 of 100; P(>10 | 5%) < 1.2%
    assert fired == 0


def test_identical_distributions_stay_quiet_with_distances():
    rng = np.random.default_rng(4)
    ref = _frame(5_000, rng)
    flags = [
        _drift(ref, _frame(2_000, np.random.default_rng(s))).drifted_features for s in range(100)
    ]
    assert sum(map(bool, flags)) == 0


def test_importance_weights_the_score():
    rng = np.random.default_rng(5)
    ref, cur = _frame(3_000, rng), _frame(500, rng, shift=1.0)
    important = {"n0": 8.0, "n1": 1.0, "n2": 1.0}
    unimportant = {"n0": 0.0, "n1": 5.0, "n2": 5.0}
    assert _drift(ref, cur, importance=important).score == pytest.approx(0.8)
    assert _drift(ref, cur, importance=unimportant).score == 0.0
    assert _drift(ref, cur).score == pytest.approx(1 / 8)  # uniform when absent
    assert not _drift(ref, cur).drifting and _drift(ref, cur, importance=important).drifting


def test_importance_weights_fall_back_to_uniform():
    assert drift.importance_weights(["a", "b"], {"a": 0, "b": 0}) == {"a": 0.5, "b": 0.5}
    assert drift.importance_weights(["a", "b"], {"a": 3, "b": 1}) == {"a": 0.75, "b": 0.25}
    assert drift.importance_weights(["a"], {"a": float("nan")}) == {"a": 1.0}


def test_prediction_drift_and_empty_columns():
    rng = np.random.default_rng(6)
    ref = _frame(2_000, rng).with_columns(pl.Series("__score__", rng.beta(2, 5, 2_000)))
    cur = _frame(300, rng).with_columns(
        pl.Series("score", rng.beta(5, 2, 300)), pl.lit(None, pl.Float64).alias("n1")
    )
    res = drift.compute_drift(
        ref, cur, numeric=NUMERIC, categorical=CATEGORICAL, importance=None,
        config=DriftConfig(), score_column="__score__", current_score_column="score",
    )  # fmt: skip
    assert res.prediction is not None and res.prediction.drifted
    n1 = next(f for f in res.features if f.feature == "n1")
    assert n1.method == "none" and not n1.drifted and n1.current_rows == 0


def _run(states, drifting, minutes, config, champion="m:1", rows=1_000, retrain=None):
    result = drift.DriftResult("tests", 0.9 if drifting else 0.1, 0.5, drifting, rows, [], None)
    decision, state = drift.decide(
        result, state=states[-1], config=config, now=T0 + timedelta(minutes=minutes),
        champion_tag=champion, last_retrain_at=retrain,
    )  # fmt: skip
    states.append(state)
    return decision


def test_hysteresis_needs_n_consecutive_windows():
    config = DriftConfig(hysteresis_windows=3, cooldown_minutes=0)
    s: list[MonitorState] = [MonitorState()]
    assert [_run(s, True, m, config).action for m in (0, 1)] == ["drifting", "drifting"]
    assert _run(s, False, 2, config).action == "quiet"  # a quiet window resets the count
    actions = [_run(s, True, m, config).action for m in (3, 4, 5)]
    assert actions == ["drifting", "drifting", "fire"]
    assert s[-1].consecutive == 0 and s[-1].last_fired_at == T0 + timedelta(minutes=5)
    assert [h.action for h in s[-1].history][-3:] == ["drifting", "drifting", "fire"]
    assert s[0] == MonitorState()  # decide never changes the state it is given


def test_small_window_decides_nothing():
    config = DriftConfig(hysteresis_windows=2, min_window_rows=500)
    s: list[MonitorState] = [MonitorState()]
    assert _run(s, True, 0, config).action == "drifting"
    d = _run(s, True, 1, config, rows=499)
    assert d.action == "insufficient" and d.consecutive == 1
    assert _run(s, True, 2, config).action == "fire"


def test_cooldown_after_fire_and_after_retrain():
    config = DriftConfig(hysteresis_windows=1, cooldown_minutes=60)
    s: list[MonitorState] = [MonitorState()]
    assert _run(s, True, 0, config).fire
    d = _run(s, True, 30, config)
    assert d.action == "cooldown" and not d.fire and d.cooldown_until.startswith("2026-01-01T01:00")
    assert _run(s, True, 61, config).fire
    # a champion change (retrain promoted) resets the count and starts a new cooldown
    retrain = T0 + timedelta(minutes=100)
    assert _run(s, True, 110, config, champion="m:2", retrain=retrain).action == "cooldown"
    assert _run(s, True, 161, config, champion="m:2", retrain=retrain).fire


def test_one_cooldown_rule():
    """The latest start wins; nothing started, no cooldown."""
    later = T0 + timedelta(minutes=30)
    assert drift.cooldown_end(None, None, minutes=60) is None
    assert drift.cooldown_end(T0, None, later, minutes=60) == later + timedelta(minutes=60)
