"""Serving test kit: tiny Telco boosters, homes holding them, a real `driftloop serve`."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import lightgbm as lgb
import numpy as np
import polars as pl

from schemas import load_dataset
from tasks import registry
from tasks.features import FeatureSpec, build_features, to_matrix
from tasks.settings import Settings

REPO = Path(__file__).resolve().parents[2]
TELCO_CSV = REPO / "data" / "telco_churn.csv"
ADMIN_TOKEN = "test-admin-token"


@dataclass(frozen=True)
class TinyModels:
    """Two different boosters on Telco features, and typed rows to score."""

    a: lgb.Booster
    b: lgb.Booster
    features: FeatureSpec
    rows: pl.DataFrame  # contract-typed input rows (no target)
    records: list[dict]  # the same rows as JSON records


def telco_frame() -> pl.DataFrame:
    raw = pl.read_csv(TELCO_CSV, infer_schema=False)
    return raw.with_columns(
        pl.col("SeniorCitizen", "tenure").cast(pl.Int64),
        pl.col("MonthlyCharges").cast(pl.Float64),
        pl.col("TotalCharges").str.strip_chars().cast(pl.Float64, strict=False),
    )


def train_tiny(frame: pl.DataFrame, fspec: FeatureSpec, leaves: int, rounds: int) -> lgb.Booster:
    x = to_matrix(build_features(frame, fspec))
    y = (frame["Churn"] == "Yes").cast(pl.Int64).to_numpy()
    params = {
        "objective": "binary",
        "num_leaves": leaves,
        "learning_rate": 0.1,
        "num_threads": 1,
        "verbose": -1,
        "seed": 7,
        "deterministic": True,
    }
    data = lgb.Dataset(x, y, categorical_feature=fspec.categorical_indices, free_raw_data=False)
    return lgb.train(params, data, num_boost_round=rounds)


@functools.cache
def tiny_models() -> TinyModels:
    """Two small boosters (A: 7 leaves x 15 rounds, B: 15 x 25) and 400 held-out rows."""
    ds = load_dataset("telco")
    fspec = FeatureSpec.from_dataset(ds)
    frame = telco_frame()
    train = frame.head(2000)
    a = train_tiny(train, fspec, leaves=7, rounds=15)
    b = train_tiny(train, fspec, leaves=15, rounds=25)
    rows = frame.slice(2000, 400).drop("Churn")
    return TinyModels(a, b, fspec, rows, rows.to_dicts())


def save(booster: lgb.Booster, fspec: FeatureSpec, settings: Settings, note: str) -> str:
    meta = {"threshold": 0.4, "task": "binary", "note": note}
    return registry.save_model(
        booster, name="telco", features=fspec, metadata=meta, settings=settings
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_home(prefix: str) -> Path:
    home = Path(tempfile.mkdtemp(prefix=f"driftloop-{prefix}-"))
    return home


class Server:
    """A running ``driftloop serve`` (bentoml serve) subprocess."""

    def __init__(self, home: Path, port: int, extra_env: dict[str, str] | None = None):
        self.home = home
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "DRIFTLOOP_HOME": str(home),
            "BENTOML_HOME": str(home / "bentoml"),
            "DRIFTLOOP_ADMIN_TOKEN": ADMIN_TOKEN,
            "DRIFTLOOP_PREDLOG_FLUSH_SECONDS": "0.5",
            **(extra_env or {}),
        }
        self.log_path = home / "server.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            ["uv", "run", "--frozen", "driftloop", "serve", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: teardown reaches every worker
        )
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None or "Application startup failed" in self.log():
                raise RuntimeError(f"server failed to start:\n{self.log()}")
            try:
                if self.client.get("/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"server not ready in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal the group, wait, escalate to SIGKILL; return the exit code."""
        self.client.close()
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        # workers left behind would keep the port: make sure the group is gone
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()
        return self.proc.returncode


def predict(server: Server, records: list[dict]) -> httpx.Response:
    return server.client.post("/predict", json={"records": records})


def scores_in_process(booster: lgb.Booster, fspec: FeatureSpec, rows: pl.DataFrame) -> np.ndarray:
    return booster.predict(to_matrix(build_features(rows, fspec)), num_threads=1)


def dumps(obj: object) -> str:
    return json.dumps(obj)
