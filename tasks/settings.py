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

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """All locations and server URLs, read from ``DRIFTLOOP_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="DRIFTLOOP_", extra="ignore")

    home: Path = Field(default=Path(".driftloop"), description="Root of all local state.")
    optuna_storage: str | None = Field(
        default=None, description="Optuna storage URL; default SQLite file under home."
    )
    prefect_api_url: str | None = Field(
        default=None, description="Prefect API URL; default: whatever PREFECT_API_URL says."
    )
    admin_token: str | None = Field(default=None, description="Token for admin endpoints.")

    @cached_property
    def root(self) -> Path:
        return self.home.expanduser().resolve()

    # --- data ---------------------------------------------------------------------------
    @property
    def snapshots_dir(self) -> Path:
        return self.root / "data" / "snapshots"

    @property
    def quarantine_dir(self) -> Path:
        return self.root / "data" / "quarantine"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    # --- models -------------------------------------------------------------------------
    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def alias_index(self) -> Path:
        return self.models_dir / "index.json"

    @property
    def bentoml_home(self) -> Path:
        return self.root / "bentoml"

    @property
    def wandb_dir(self) -> Path:
        return self.root / "wandb"

    @property
    def optuna_url(self) -> str:
        return self.optuna_storage or f"sqlite:///{self.root / 'optuna.db'}"

    # --- orchestration ------------------------------------------------------------------
    @property
    def prefect_home(self) -> Path:
        return self.root / "prefect"

    # --- serving and monitoring ---------------------------------------------------------
    @property
    def predictions_dir(self) -> Path:
        return self.root / "serving" / "predictions"

    @property
    def feedback_dir(self) -> Path:
        return self.root / "serving" / "feedback"

    @property
    def reference_profiles_dir(self) -> Path:
        return self.root / "profiles" / "reference"

    @property
    def window_profiles_dir(self) -> Path:
        return self.root / "profiles" / "windows"

    @property
    def monitor_state(self) -> Path:
        return self.root / "monitor" / "state.json"

    # --- monitoring, events and retraining (issue #11, monitoring helper) -----------------
    @property
    def monitor_state_lock(self) -> Path:
        return self.root / "monitor" / "state.lock"

    @property
    def events_outbox_dir(self) -> Path:
        return self.root / "events" / "outbox"

    @property
    def events_sent_dir(self) -> Path:
        return self.root / "events" / "sent"

    @property
    def events_outbox_lock(self) -> Path:
        return self.root / "events" / "outbox.lock"

    @property
    def retrain_dir(self) -> Path:
        """Training files a retrain assembled (reference + feedback), one per run."""
        return self.root / "retrain"

    # --- end of the monitoring helper's block ---------------------------------------------

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
