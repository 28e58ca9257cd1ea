"""The service's knobs are Settings fields read from the same DRIFTLOOP_* variables as before."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tasks.settings import Settings


def test_service_knobs_come_from_their_environment_variables(monkeypatch: pytest.MonkeyPatch):
    defaults = Settings()
    assert (defaults.dataset, defaults.serve_workers, defaults.max_records) == ("telco", 1, None)
    assert defaults.max_body_bytes == 8 * 1024 * 1024 and defaults.predlog_flush_seconds == 2.0
    assert defaults.batch_max_latency_ms == 10_000
    assert defaults.predlog_durability == "write" and not defaults.predlog_fsync
    assert not defaults.access_log and not defaults.tracing
    for name, value in {
        "DATASET": "other", "SERVE_WORKERS": "3", "MAX_RECORDS": "50",
        "MAX_BODY_BYTES": "1024", "PREDLOG_FLUSH_SECONDS": "0.5",
        "BATCH_MAX_LATENCY_MS": "250", "ACCESS_LOG": "1", "TRACING": "1",
        "PREDLOG_DURABILITY": "fsync",
    }.items():  # fmt: skip
        monkeypatch.setenv(f"DRIFTLOOP_{name}", value)
    s = Settings()
    assert (s.dataset, s.serve_workers, s.max_records, s.max_body_bytes) == ("other", 3, 50, 1024)
    assert (s.predlog_flush_seconds, s.batch_max_latency_ms) == (0.5, 250)
    assert s.access_log and s.tracing
    assert s.predlog_durability == "fsync" and s.predlog_fsync
    monkeypatch.setenv("DRIFTLOOP_ACCESS_LOG", "0")
    assert not Settings().access_log


def test_a_nonsense_knob_is_refused_not_silently_defaulted(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DRIFTLOOP_MAX_BODY_BYTES", "lots")
    with pytest.raises(ValidationError, match="max_body_bytes"):
        Settings()
    monkeypatch.delenv("DRIFTLOOP_MAX_BODY_BYTES")
    monkeypatch.setenv("DRIFTLOOP_PREDLOG_DURABILITY", "sometimes")
    with pytest.raises(ValidationError, match="predlog_durability"):
        Settings()


def test_stack_and_demo_paths_live_under_home(tmp_path):
    s = Settings(home=tmp_path / "h")
    for path in (s.stack_state, s.stack_logs_dir, s.demo_marker, s.prefect_db, s.demo_reference,
                 s.bento_exports_dir):  # fmt: skip
        assert path.is_relative_to(s.root)
    assert s.stack_state == s.root / "stack" / "state.json"  # the layout a running stack wrote
