"""A monitor window's findings for tests of the decision: what the decision does not read (the
window's bounds, the service's health) is quiet."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tasks.monitoring.checks import Health, Performance, Quality
from tasks.monitoring.findings import WindowFindings
from tasks.monitoring.window import Champion, Window

_UNTIL = datetime(2026, 1, 1, tzinfo=UTC)
QUIET_HEALTH = Health(0, 0.0, None, None, None, None, "window", True, [])


def window_findings(
    drift: Any, quality: Quality, performance: Performance, champion: Champion, **judged: Any
) -> WindowFindings:
    """``drift`` (a ``DriftResult``, or any object with its ``drifting``, ``window_rows`` and
    ``score``; None: blocked); ``judged``: ``evidence``, ``verdict`` (default None)."""
    bounds = Window(_UNTIL - timedelta(hours=1), _UNTIL)
    evidence, verdict = judged.get("evidence"), judged.get("verdict")
    return WindowFindings(
        champion, bounds, quality.rows, drift, quality, performance, QUIET_HEALTH, evidence,
        verdict, None,
    )  # fmt: skip
