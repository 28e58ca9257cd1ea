"""Where driftloop keeps its state and which servers it talks to.

Every path lives under one directory, ``DRIFTLOOP_HOME`` (default ``.driftloop/`` in the
working directory). Servers and storage are settings too, so the embedded defaults and a
scaled-out deployment differ only in environment variables. Nothing here touches the disk
at import time: call :func:`get_settings` and then :meth:`Settings.ensure_dirs` when needed.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PREFECT_MIN_HEARTBEAT_S = 30  # Prefect refuses a shorter PREFECT_FLOWS_HEARTBEAT_FREQUENCY


def _under(*parts: str, doc: str | None = None) -> property:
    """A read-only path ``home/<parts>`` (``Settings.root``)."""
    return property(lambda settings: settings.root.joinpath(*parts), doc=doc)


class Settings(BaseSettings):
    """All locations and server URLs, read from ``DRIFTLOOP_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="DRIFTLOOP_", extra="ignore")

    home: Path = Field(default=Path(".driftloop"), description="Root of all local state.")
    optuna_storage: str | None = Field(
        default=None, description="Optuna storage URL; default SQLite file under home."
    )
    optuna_stale_after_s: int = Field(
        default=60, ge=2, description="A shared study's trial with no heartbeat for this long "
        "(its worker died) is failed and re-run with its parameters.",
    )  # fmt: skip
    prefect_api_url: str | None = Field(
        default=None, description="Prefect API URL; default: whatever PREFECT_API_URL says."
    )
    flow_heartbeat_s: int = Field(
        default=PREFECT_MIN_HEARTBEAT_S, ge=PREFECT_MIN_HEARTBEAT_S,
        description="Seconds between a running flow's heartbeat events "
        "(PREFECT_FLOWS_HEARTBEAT_FREQUENCY; 30 is Prefect's minimum).",
    )  # fmt: skip
    crash_grace_s: int = Field(
        default=60, ge=10, description="A flow run whose next heartbeat is this late (after "
        "flow_heartbeat_s) is marked Crashed by the server's crash-detection automation.",
    )  # fmt: skip
    admin_token: str | None = Field(default=None, description="Token for admin endpoints.")
    min_free_mb: int = Field(
        default=64, ge=0, description="A writing command refuses to start with less free disk."
    )

    # --- the service's knobs (read by ``bentos/`` when ``bentoml serve`` imports it) ------
    dataset: str = Field(default="telco", description="The dataset (= model name) served.")
    serve_workers: int = Field(default=1, ge=1, description="Service worker processes.")
    max_records: int | None = Field(
        default=None, ge=1, description="Records per /predict; default: the request contract's."
    )
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1, description="Request body cap.")
    predlog_flush_seconds: float = Field(
        default=2.0, gt=0, description="How often the prediction and feedback logs flush."
    )
    predlog_durability: Literal["write", "fsync"] = Field(
        default="write", description="What a /predict or /feedback answer waits for: its log "
        "row written to the journal ('write': in the OS, survives a SIGKILL of the service but "
        "not an OS crash or power cut) or also fsynced ('fsync': survives those too, at a disk "
        "flush per group commit). docs/reliability.md.",
    )  # fmt: skip
    batch_max_latency_ms: int = Field(
        default=10_000, ge=1, description="Adaptive batching's latency bound (/predict_batch)."
    )
    access_log: bool = Field(default=False, description="BentoML's per-request access log.")
    tracing: bool = Field(default=False, description="Request tracing spans (no exporter set).")
    process_metrics_seconds: float | None = Field(
        default=None, gt=0, description="Process/model gauge sampling; default: the sampler's."
    )

    @property
    def predlog_fsync(self) -> bool:
        """Whether the prediction and feedback logs fsync what they acknowledge."""
        return self.predlog_durability == "fsync"

    @property
    def crash_after_s(self) -> int:
        """Silence after a flow run's last heartbeat that marks it Crashed."""
        return self.flow_heartbeat_s + self.crash_grace_s

    @cached_property
    def root(self) -> Path:
        return self.home.expanduser().resolve()

    # --- the state layout under home, one line a place ----------------------------------
    # data
    snapshots_dir = _under("data", "snapshots")
    quarantine_dir = _under("data", "quarantine")
    reports_dir = _under("reports")
    # models
    models_dir = _under("models")
    alias_index = _under("models", "index.json")
    bentoml_home = _under("bentoml")
    bento_exports_dir = _under("bentoml", "exports")
    wandb_dir = _under("wandb")
    # orchestration
    prefect_home = _under("prefect")
    prefect_db = _under("prefect", "prefect.db")
    stack_state = _under(
        "stack",
        "state.json",
        doc="Pids, process groups and the API URL of the running local stack.",
    )
    stack_logs_dir = _under("stack", "logs")
    demo_marker = _under(
        ".driftloop-demo",
        doc="Marks a home made by ``driftloop demo`` (the only kind the demo may reset).",
    )
    demo_reference = _under(
        "reference.csv", doc="The rows ``driftloop demo`` trains its first champion on."
    )
    # serving and monitoring
    predictions_dir = _under("serving", "predictions")
    feedback_dir = _under("serving", "feedback")
    reference_profiles_dir = _under("profiles", "reference")
    window_profiles_dir = _under("profiles", "windows")
    monitor_state = _under("monitor", "state.json")
    monitor_state_lock = _under("monitor", "state.lock")
    # events and retraining
    events_outbox_dir = _under("events", "outbox")
    events_sent_dir = _under("events", "sent")
    events_outbox_lock = _under("events", "outbox.lock")
    retrain_dir = _under(
        "retrain", doc="Training files a retrain assembled (reference + feedback), one per run."
    )

    @property
    def optuna_url(self) -> str:
        return self.optuna_storage or f"sqlite:///{self.root / 'optuna.db'}"

    # --- shared state on PostgreSQL (issue #16, topology helper) ------------------------
    database_url: str | None = Field(
        default=None,
        description=(
            "PostgreSQL URL (postgresql://user@host:port/db) for the state several hosts share:"
            " the prediction and feedback logs. Unset: Parquet files under home."
        ),
    )

    # --- end of the topology helper's block -----------------------------------------------

    def ensure_dirs(self) -> Settings:
        """Create the state layout (idempotent)."""
        for path in (
            self.snapshots_dir,
            self.quarantine_dir,
            self.reports_dir,
            self.models_dir,
            self.bentoml_home,
            self.wandb_dir,
            self.prefect_home,
            self.predictions_dir,
            self.feedback_dir,
            self.reference_profiles_dir,
            self.window_profiles_dir,
            self.monitor_state.parent,
        ):
            path.mkdir(parents=True, exist_ok=True)
        return self

    def library_env(self) -> dict[str, str]:
        """Environment variables that pin every outside library's state under ``home``."""
        env = {
            "DRIFTLOOP_HOME": str(self.root),
            "BENTOML_HOME": str(self.bentoml_home),
            "WANDB_DIR": str(self.wandb_dir),
            "WANDB_DATA_DIR": str(self.wandb_dir / "data"),
            "WANDB_CACHE_DIR": str(self.wandb_dir / "cache"),
            "WANDB_CONFIG_DIR": str(self.wandb_dir / "config"),
            "WHYLOGS_NO_ANALYTICS": "True",
            "PREFECT_HOME": str(self.prefect_home),
            # every flow run this home starts beats at the rate crash detection expects
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(self.flow_heartbeat_s),
        }
        if "WANDB_MODE" not in os.environ and "WANDB_API_KEY" not in os.environ:
            env["WANDB_MODE"] = "offline"
        if self.prefect_api_url:
            env["PREFECT_API_URL"] = self.prefect_api_url
        return env

    def apply_env(self) -> Settings:
        """Export :meth:`library_env` into this process, so no library writes elsewhere."""
        os.environ.update(self.library_env())
        return self


def get_settings() -> Settings:
    """Fresh settings from the current environment (cheap; never cached across env changes)."""
    return Settings()
