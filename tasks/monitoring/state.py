"""The monitor's state between runs: one typed record per model, read and written only here.

The file (``settings.monitor_state``) maps model name -> :class:`MonitorState` as JSON. Every
change goes through :func:`update_state`, which holds ``settings.monitor_state_lock`` across the
read-modify-write, so two monitor runs (or a run and a scrape) never lose each other's update.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, PlainSerializer

from tasks.estimation.stats import BinaryMetrics, RegressionMetrics
from tasks.io import locked, write_json
from tasks.monitoring.serving import ServingCounters, scrape_serving
from tasks.settings import Settings, get_settings

# ISO 8601 exactly as ``datetime.isoformat`` writes it ("+00:00", not pydantic's "Z")
IsoTime = Annotated[datetime, PlainSerializer(lambda t: t.isoformat(), when_used="json")]


class HistoryEntry(BaseModel):
    at: IsoTime
    score: float | None = None
    action: str


class StoredEstimate(BaseModel):
    """A window's label-free estimate, kept to show beside the realized value later."""

    champion_tag: str
    start: IsoTime
    end: IsoTime
    rows: int
    metrics: BinaryMetrics | RegressionMetrics


class MonitorState(BaseModel):
    """One model's entry: drift hysteresis, cooldown clocks, the last serving scrape, the
    windows' stored estimates."""

    champion_tag: str | None = None
    consecutive: int = 0
    last_fired_at: IsoTime | None = None
    last_performance_fired_at: IsoTime | None = None
    last_retrain_requested_at: IsoTime | None = None  # an event that asked for a retrain
    history: list[HistoryEntry] = Field(default_factory=list)
    serving_counters: ServingCounters | None = None
    estimates: list[StoredEstimate] = Field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The file's form: keys that were never set are left out (as before the model), and
        so are the stored estimates while there are none."""
        doc = self.model_dump(mode="json")
        return {k: v for k, v in doc.items() if v is not None and (k != "estimates" or v)}


def _read_all(settings: Settings) -> dict[str, Any]:
    path = settings.monitor_state
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise ValueError(f"monitor state {path} is not valid JSON: {exc}") from None


def load_state(model_name: str, settings: Settings | None = None) -> MonitorState:
    """This model's state (empty before the first run), read under the lock."""
    settings = settings or get_settings()
    with locked(settings.monitor_state_lock):
        return MonitorState.model_validate(_read_all(settings).get(model_name, {}))


@contextlib.contextmanager
def update_state(model_name: str, settings: Settings | None = None) -> Iterator[MonitorState]:
    """Yield this model's state to change in place; written atomically when the block ends
    (other models' entries are kept). The lock is held throughout."""
    settings = settings or get_settings()
    with locked(settings.monitor_state_lock):
        everything = _read_all(settings)
        state = MonitorState.model_validate(everything.get(model_name, {}))
        yield state
        everything[model_name] = state.to_json()
        write_json(settings.monitor_state, everything, sort_keys=True)


def serving_since_last_run(
    model_name: str, url: str | None, settings: Settings | None = None, timeout_s: float = 3.0
) -> ServingCounters | None:
    """The service's counts since the previous monitor run (None without a URL or answer);
    the cumulative counters of this scrape are kept in the state for the next run."""
    if not url:
        return None
    now = scrape_serving(url, timeout_s)
    if now is None:
        return None
    with update_state(model_name, settings) as state:
        before = state.serving_counters or ServingCounters()
        state.serving_counters = now
    return now.minus(before)
