"""The replay's per-scenario summary: the AUC change pairs each drifted window with its own
rows before the drift; the unpaired difference against the earlier windows is kept beside."""

from __future__ import annotations

import pytest

from tasks.replay.run import ReplaySpec, WindowOutcome
from tasks.replay.summary import summarize
from tasks.simulate import SCENARIOS


def _window(index: int, realized: float, undrifted: float) -> WindowOutcome:
    return WindowOutcome(
        seed=0, index=index, events=(), retrain=False, drift_alert=False,
        univariate_drifting=False, feature_drifted=True, multivariate_drifted=None,
        concept_drift=False, quality_failed=False, labels_matured_drifted=0,
        realized_auc=realized, undrifted_auc=undrifted, estimated_auc=realized,
        estimated_lower=realized - 0.01, estimated_upper=realized + 0.01, monitor_seconds=0.1,
    )  # fmt: skip


def test_the_auc_change_is_paired_with_the_windows_own_rows() -> None:
    spec = ReplaySpec("harmless_covariate", SCENARIOS["harmless_covariate"], windows=4)
    # the two windows before the change happened to be high; the drift itself cost 0.002
    found = [_window(0, 0.84, 0.84), _window(1, 0.84, 0.84), _window(2, 0.818, 0.82),
             _window(3, 0.808, 0.81)]  # fmt: skip
    summary = summarize(spec, found)
    assert summary.auc_change == pytest.approx(-0.002)
    assert summary.auc_change_unpaired == pytest.approx(-0.027)
    harmless = {t.name: t for t in summary.targets}["|AUC change|"]
    assert harmless.value == pytest.approx(0.002) and harmless.met
    assert summary.feature_drift_rate_drifted == 1.0 and summary.retrain_rate == 0.0
