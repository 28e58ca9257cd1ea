"""What one monitor run found in its window: one typed bundle the decision and the report read,
instead of the same six results passed loose through each of them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tasks.drift import DriftResult
    from tasks.monitoring.checks import Health, Performance, Quality
    from tasks.monitoring.evidence import Evidence
    from tasks.monitoring.policy import Verdict
    from tasks.monitoring.serving import ServiceProcess
    from tasks.monitoring.window import Champion, Window


@dataclass(frozen=True)
class WindowFindings:
    """The champion judged, the window (bounds, row count), each check's result, and the
    evidence with the policy's verdict on it (None: not gathered, no policy). ``drift`` is
    None when data quality kept drift from being computed; ``process``, the service's workers
    (None: no ``serving_url``). Every field is stated by whoever builds it: no defaults."""

    champion: Champion
    bounds: Window
    rows: int
    drift: DriftResult | None
    quality: Quality
    performance: Performance
    health: Health
    evidence: Evidence | None
    verdict: Verdict | None
    process: ServiceProcess | None
