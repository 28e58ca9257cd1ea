"""Serving benchmark: driftloop's BentoML service vs raw Booster.predict vs FastAPI + uvicorn.

One run, side by side, on the same rows and the same model:

- ``raw``: in-process ``Booster.predict`` (num_threads=1) on a prepared matrix;
- ``bentoml``: ``driftloop serve`` (bentoml serve, validation, features, prediction log,
  metrics) over HTTP on loopback;
- ``fastapi``: a plain FastAPI + uvicorn endpoint (the peer baseline) serving the same model
  through the same validation and feature code, without the prediction log and metrics.

Load: batch 1 with 32 concurrent keep-alive clients (closed loop), batch 1 with a single client
(unloaded latency), and batch 1,000 with 2 concurrent clients. The load generator is a separate
process speaking raw HTTP/1.1 (so Python client overhead does not hide the servers'), bounded
in time and request count. Memory: the serving process RSS at rest and under a steady load
(:func:`soak`, parameterised by duration: seconds here; ``bench.bench_memory`` runs it for
10 minutes under ``make bench``).

Run: ``uv run python -m bench.bench_serving [--quick]`` -> ``bench/results/serving.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
AREA = "serving"
CLIENTS_B1 = 32
CLIENTS_B1000 = 2
MAX_REQUESTS = 200_000  # hard bound on any one load phase
PACED_SHARE = 0.5  # paced phase: offered load as a share of closed-loop capacity


# --- model and rows ------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    home: Path
    booster: Any
    matrix: Any  # features of `records`, as the service builds them
    records: list[dict]  # contract-typed rows as JSON records
    trees: int
    leaves: int


def prepare(quick: bool) -> Setup:
    """Train a Telco model of a typical tuned size on the shipped data; store it as champion."""
    import lightgbm as lgb
    import polars as pl

    from schemas import load_dataset
    from tasks import registry
    from tasks.features import FeatureSpec, build_features, to_matrix
    from tasks.settings import Settings

    home = Path(tempfile.mkdtemp(prefix="driftloop-bench-serving-"))
    settings = Settings(home=home).ensure_dirs()
    ds = load_dataset("telco")
    fspec = FeatureSpec.from_dataset(ds)
    raw = pl.read_csv(REPO / "data" / "telco_churn.csv", infer_schema=False)
    frame = raw.with_columns(
        pl.col("SeniorCitizen", "tenure").cast(pl.Int64),
        pl.col("MonthlyCharges").cast(pl.Float64),
        pl.col("TotalCharges").str.strip_chars().cast(pl.Float64, strict=False),
    )
    trees, leaves = (100, 31) if quick else (300, 31)
    x = to_matrix(build_features(frame, fspec))
    y = (frame["Churn"] == "Yes").cast(pl.Int64).to_numpy()
    params = {"objective": "binary", "num_leaves": leaves, "learning_rate": 0.05,
              "num_threads": 1, "verbose": -1, "seed": 1}  # fmt: skip
    booster = lgb.train(params, lgb.Dataset(x, y, categorical_feature=fspec.categorical_indices),
                        num_boost_round=trees)  # fmt: skip
    tag = registry.save_model(booster, name="telco", features=fspec,
                              metadata={"threshold": 0.4}, settings=settings)  # fmt: skip
    registry.set_alias("telco", registry.CHAMPION, tag, settings=settings)
    inputs = frame.drop("Churn")
    return Setup(home, booster, x, inputs.to_dicts(), trees, leaves)


# --- raw in-process -----------------------------------------------------------------------


def bench_raw(setup: Setup, seconds: float) -> dict[str, dict]:
    """Booster.predict on the same rows: per-call latency at batch 1, rows/s at batch 1,000."""
    x = setup.matrix
    out = {}
    for batch in (1, 1000):
        lat = []
        deadline = time.perf_counter() + seconds
        i = 0
        while time.perf_counter() < deadline and len(lat) < MAX_REQUESTS:
            lo = (i * batch) % (x.shape[0] - batch)
            t0 = time.perf_counter()
            setup.booster.predict(x[lo : lo + batch], num_threads=1)
            lat.append(time.perf_counter() - t0)
            i += 1
        total = sum(lat)
        out[f"b{batch}"] = {
            "rps": len(lat) / total,
            "rows_per_s": len(lat) * batch / total,
            **_quantiles(lat),
            "n": len(lat),
        }
    return out


def _quantiles(lat: list[float]) -> dict[str, float]:
    if not lat:
        return {"p50_ms": float("nan"), "p99_ms": float("nan")}
    s = sorted(lat)
    return {
        "p50_ms": s[len(s) // 2] * 1e3,
        "p99_ms": s[min(len(s) - 1, int(len(s) * 0.99))] * 1e3,
    }


# --- servers ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A server subprocess in its own process group; always stopped."""

    def __init__(self, cmd: list[str], env: dict[str, str], port: int, log: Path):
        self.port = port
        self.log = log
        self._fh = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=self._fh,
                                     stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip

    def wait_ready(self, path: str, timeout: float = 180) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=2).status_code == 200:
                    return
            time.sleep(0.3)
        raise TimeoutError(f"server not ready: {self.log.read_text()[-2000:]}")

    def rss_mb(self) -> dict[str, float]:
        """RSS of the serving worker(s) and of the whole process tree, in MiB."""
        import psutil

        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return {"tree": float("nan"), "worker": float("nan")}
        rss = {}
        for p in procs:
            with contextlib.suppress(psutil.Error):
                rss[p.pid] = (p.memory_info().rss, " ".join(p.cmdline()))
        workers = [r for r, cmd in rss.values() if "worker" in cmd or "uvicorn" in cmd]
        return {
            "tree": sum(r for r, _ in rss.values()) / 2**20,
            "worker": (max(workers) if workers else max(r for r, _ in rss.values())) / 2**20,
        }

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._fh.close()


def _env(setup: Setup) -> dict[str, str]:
    home = setup.home
    return {**os.environ, "DRIFTLOOP_HOME": str(home),
            "BENTOML_HOME": str(home / "bentoml"), "BENTOML_DO_NOT_TRACK": "True"}  # fmt: skip


def start_bentoml(setup: Setup, workers: int = 1, wait: bool = True) -> Proc:
    port = _free_port()
    cmd = ["uv", "run", "--frozen", "driftloop", "serve", "--port", str(port),
           "--workers", str(workers)]  # fmt: skip
    proc = Proc(cmd, _env(setup), port, setup.home / "bentoml.log")
    if wait:
        proc.wait_ready("/readyz")
    return proc


def start_fastapi(setup: Setup, workers: int = 1, wait: bool = True) -> Proc:
    port = _free_port()
    cmd = [sys.executable, "-m", "uvicorn", "bench.bench_serving:peer_app", "--factory",
           "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
           "--no-access-log", "--log-level", "warning"]  # fmt: skip
    proc = Proc(cmd, _env(setup), port, setup.home / "fastapi.log")
    if wait:
        proc.wait_ready("/healthz")
    return proc


def peer_app():
    """The peer baseline: FastAPI + uvicorn, the same model, validation and feature code."""
    import orjson
    from fastapi import FastAPI
    from fastapi.responses import Response
    from pydantic import create_model

    from schemas import load_dataset
    from schemas.requests import MAX_BATCH_RECORDS, records_type, request_models
    from tasks import registry
    from tasks.scoring import score_inputs

    ds = load_dataset("telco")
    body_model = create_model(
        "PredictRequest", records=(records_type(request_models(ds), MAX_BATCH_RECORDS), ...)
    )
    model = registry.load_model("telco:champion")
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True}

    async def predict(req) -> Response:
        batch = score_inputs(req.records.frame, model, ds.id_column)
        preds = [
            {"request_id": r, "id": i, "score": s, "decision": d, "model_tag": model.tag}
            for r, i, s, d in zip(batch.request_ids, batch.entity_ids, batch.scores.tolist(),
                                  batch.decisions.tolist(), strict=True)
        ]  # fmt: skip
        return Response(orjson.dumps({"model_tag": model.tag, "predictions": preds}),
                        media_type="application/json")  # fmt: skip

    predict.__annotations__ = {"req": body_model, "return": Response}  # a runtime-built type
    app.post("/predict")(predict)
    return app


# --- load generator (a separate process, raw HTTP/1.1 keep-alive) ---------------------------


def _requests(path: str, records: list[dict], batch: int, n: int) -> list[bytes]:
    out = []
    for k in range(n):
        lo = (k * batch) % max(1, len(records) - batch)
        body = json.dumps({"records": records[lo : lo + batch]}).encode()
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()  # fmt: skip
        out.append(head + body)
    return out


_CL = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")


async def _client(port: int, reqs: list[bytes], stop_at: float, cap: int, out: dict,
                  interval: float = 0.0, offset: float = 0.0) -> None:  # fmt: skip
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    next_at = time.perf_counter() + offset  # clients spread evenly over one interval
    try:
        while time.perf_counter() < stop_at and out["count"] < cap:
            if interval:  # paced: one request per interval per client (sent late if behind)
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                next_at += interval
            req = reqs[i % len(reqs)]
            i += 1
            t0 = time.perf_counter()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            m = _CL.search(head)
            if m:
                await reader.readexactly(int(m.group(1)))
            else:  # chunked
                while True:
                    size = int((await reader.readline()).strip(), 16)
                    await reader.readexactly(size + 2)
                    if size == 0:
                        break
            lat = time.perf_counter() - t0
            out["count"] += 1
            if head[9:12] != b"200":
                out["errors"] += 1
            if out["measure"]:
                out["lat"].append(lat)
    finally:
        writer.close()


async def _load(port: int, reqs: list[bytes], clients: int, warmup: float, seconds: float,
                rate: float = 0.0) -> dict:  # fmt: skip
    out = {"count": 0, "errors": 0, "lat": [], "measure": False}
    start = time.perf_counter()
    stop_at = start + warmup + seconds
    interval = clients / rate if rate else 0.0
    tasks = [asyncio.create_task(_client(port, reqs, stop_at, MAX_REQUESTS, out, interval,
                                         interval * k / clients))
             for k in range(clients)]  # fmt: skip
    await asyncio.sleep(warmup)
    out["measure"] = True
    t_measure = time.perf_counter()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t_measure
    lat = out["lat"]
    return {"rps": len(lat) / elapsed, "errors": out["errors"], "n": len(lat), **_quantiles(lat)}


def run_load(port: int, path: str, records: list[dict], batch: int, clients: int,
             seconds: float, warmup: float = 1.0, rate: float = 0.0) -> dict:  # fmt: skip
    """Drive ``clients`` connections from a child process; return its numbers.

    Closed loop (each client sends as soon as it has its answer) unless ``rate`` (requests/s
    over all clients) paces them.
    """
    spec = {"port": port, "path": path, "batch": batch, "clients": clients,
            "seconds": seconds, "warmup": warmup, "rate": rate}  # fmt: skip
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump({"spec": spec, "records": records[: max(2000, batch * 4)]}, fh)
    try:
        done = subprocess.run([sys.executable, "-m", "bench.bench_serving", "--loadgen", fh.name],
                              cwd=REPO, capture_output=True, text=True,
                              timeout=warmup + seconds + 120)  # fmt: skip
    finally:
        os.unlink(fh.name)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout)
    result["rows_per_s"] = result["rps"] * batch
    return result


def _loadgen_main(path: str) -> None:
    data = json.loads(Path(path).read_text())
    spec = data["spec"]
    reqs = _requests(spec["path"], data["records"], spec["batch"], 64)
    result = asyncio.run(_load(spec["port"], reqs, spec["clients"], spec["warmup"],
                               spec["seconds"], spec.get("rate", 0.0)))  # fmt: skip
    sys.stdout.write(json.dumps(result))


# --- memory soak --------------------------------------------------------------------------


def soak(proc: Proc, records: list[dict], seconds: float, clients: int = 4,
         sample_every: float = 5.0) -> dict:  # fmt: skip
    """RSS of the serving process at rest, then under a steady bounded load for ``seconds``."""
    rest = proc.rss_mb()
    samples = []
    gen = subprocess.Popen  # the load runs in a child; sample RSS meanwhile
    spec_seconds = max(1.0, seconds)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump({"spec": {"port": proc.port, "path": "/predict", "batch": 1,
                            "clients": clients, "seconds": spec_seconds, "warmup": 0.0},
                   "records": records[:2000]}, fh)  # fmt: skip
    child = gen([sys.executable, "-m", "bench.bench_serving", "--loadgen", fh.name], cwd=REPO,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + spec_seconds + 120
        while child.poll() is None and time.monotonic() < deadline:
            samples.append(proc.rss_mb()["worker"])
            time.sleep(min(sample_every, spec_seconds / 4))
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
        os.unlink(fh.name)
    load = json.loads(out) if out else {"rps": float("nan"), "errors": -1, "n": 0}
    end = proc.rss_mb()
    return {
        "rest_worker_mb": rest["worker"],
        "rest_tree_mb": rest["tree"],
        "load_peak_worker_mb": max(samples) if samples else float("nan"),
        "load_end_worker_mb": end["worker"],
        "load_tree_mb": end["tree"],
        "growth_mb": (samples[-1] - samples[len(samples) // 4]) if len(samples) >= 4 else 0.0,
        "seconds": spec_seconds,
        "requests": load["n"],
        "errors": load["errors"],
    }


# --- the run ------------------------------------------------------------------------------


def _row(name: str, value: float, unit: str, target: str | None = None,
         met: bool | None = None, note: str = "", **extra: Any) -> dict:  # fmt: skip
    return {"area": AREA, "name": name, "value": round(value, 4) if value == value else None,
            "unit": unit, "target": target, "met": met, "note": note, **extra}  # fmt: skip


def _median(results: list[dict]) -> dict:
    """Per-key median over repeated rounds (+ the spread of throughput, and the total n)."""
    out = {k: statistics.median(r[k] for r in results) for k in results[0] if k != "n"}
    out["n"] = sum(r.get("n", 0) for r in results)
    out["errors"] = sum(r.get("errors", 0) for r in results)
    rates = [r["rps"] for r in results]
    out["spread"] = (max(rates) - min(rates)) / statistics.median(rates) if rates else 0.0
    return out


def run(quick: bool = False, soak_seconds: float | None = None) -> list[dict]:
    """Both servers run side by side; each phase alternates between them (and raw) round-robin,
    so a busy neighbour on the machine slows all of them alike; medians over the rounds."""
    # quick: every phase runs, each only long enough to prove the harness works
    seconds, rounds, warmup = (0.3, 1, 0.1) if quick else (6.0, 3, 1.0)
    if soak_seconds is None:  # the 10-minute soak is bench_memory's (it calls soak() itself)
        soak_seconds = 1.0 if quick else 60.0
    setup = prepare(quick)
    rows: list[dict] = []
    load_before = os.getloadavg()[0]
    model_note = f"Telco LightGBM {setup.trees} trees x {setup.leaves} leaves, num_threads=1"
    procs: dict[str, Proc] = {}
    try:
        procs["fastapi"] = start_fastapi(setup, wait=False)  # both boot at once
        procs["bentoml"] = start_bentoml(setup, wait=False)
        procs["fastapi"].wait_ready("/healthz")
        procs["bentoml"].wait_ready("/readyz")
        phases = {  # name -> (path per server, batch, clients)
            "b1": ({"fastapi": "/predict", "bentoml": "/predict"}, 1, CLIENTS_B1),
            "b1_single": ({"fastapi": "/predict", "bentoml": "/predict"}, 1, 1),
            "b1000": ({"fastapi": "/predict", "bentoml": "/predict"}, 1000, CLIENTS_B1000),
            "b1000_batch": ({"bentoml": "/predict_batch"}, 1000, CLIENTS_B1000),
        }
        got: dict[str, dict[str, list[dict]]] = {n: {} for n in procs}
        raw_runs: list[dict[str, dict]] = []
        for r in range(rounds):
            raw_runs.append(bench_raw(setup, min(seconds, 2.0)))
            for phase, (paths, batch, clients) in phases.items():
                order = list(paths) if r % 2 == 0 else list(reversed(list(paths)))
                for name in order:
                    res = run_load(procs[name].port, paths[name], setup.records, batch,
                                   clients, seconds, warmup=warmup)  # fmt: skip
                    got[name].setdefault(phase, []).append(res)
        served = {n: {ph: _median(v) for ph, v in got[n].items()} for n in procs}
        for name in procs:  # 32 clients paced to half of this server's closed-loop capacity
            rate = served[name]["b1"]["rps"] * PACED_SHARE
            served[name]["b1_paced"] = run_load(procs[name].port, "/predict", setup.records, 1,
                                                CLIENTS_B1, seconds * rounds,
                                                warmup=warmup, rate=rate)  # fmt: skip
        procs.pop("fastapi").stop()  # the soak sees the serving process alone
        served["bentoml"]["soak"] = soak(procs["bentoml"], setup.records, soak_seconds)
        raw = {k: _median([run[k] for run in raw_runs]) for k in raw_runs[0]}
        rows = _rows(raw, served, model_note, quick)
        machine = f"2-core box; 1-min load average {load_before:.1f} before, "
        machine += f"{os.getloadavg()[0]:.1f} after (other work on the machine skews numbers); "
        machine += f"{rounds} round(s) of {seconds:.0f} s per phase, servers alternated"
        rows.append(_row("machine_load_average", load_before, "load", note=machine))
    finally:
        for proc in procs.values():
            proc.stop()
        cleanup_home(setup.home)
    return rows


def _rows(raw: dict, served: dict, note: str, quick: bool) -> list[dict]:
    b, f = served["bentoml"], served["fastapi"]
    ratio = b["b1"]["rps"] / f["b1"]["rps"]
    p99_ok = b["b1"]["p99_ms"] <= f["b1"]["p99_ms"]
    share = b["b1000"]["rows_per_s"] / raw["b1000"]["rows_per_s"]
    mode = "quick" if quick else "full"
    rows = [
        _row("bentoml_b1_c32_rps", b["b1"]["rps"], "req/s", note=f"32 clients; {note}",
             n=b["b1"]["n"], spread=round(b["b1"]["spread"], 3)),
        _row("bentoml_b1_c32_p50", b["b1"]["p50_ms"], "ms", "<= 5 ms",
             b["b1"]["p50_ms"] <= 5.0, note="batch 1, 32 concurrent clients (closed loop)"),
        _row("bentoml_b1_c32_p99", b["b1"]["p99_ms"], "ms"),
        _row("bentoml_b1_c32_paced_p50", b["b1_paced"]["p50_ms"], "ms", "<= 5 ms",
             b["b1_paced"]["p50_ms"] <= 5.0,
             note=f"batch 1, 32 clients paced to {b['b1_paced']['rps']:.0f} req/s "
                  f"(half of capacity): latency without queueing to saturation"),
        _row("bentoml_b1_c32_paced_p99", b["b1_paced"]["p99_ms"], "ms"),
        _row("fastapi_b1_c32_paced_p50", f["b1_paced"]["p50_ms"], "ms",
             note=f"paced to {f['b1_paced']['rps']:.0f} req/s"),
        _row("bentoml_b1_c1_p50", b["b1_single"]["p50_ms"], "ms", "<= 5 ms",
             b["b1_single"]["p50_ms"] <= 5.0, note="batch 1, one client (unloaded latency)"),
        _row("bentoml_b1_c1_p99", b["b1_single"]["p99_ms"], "ms"),
        _row("fastapi_b1_c32_rps", f["b1"]["rps"], "req/s", note="peer baseline, same model",
             n=f["b1"]["n"], spread=round(f["b1"]["spread"], 3)),
        _row("fastapi_b1_c32_p50", f["b1"]["p50_ms"], "ms"),
        _row("fastapi_b1_c32_p99", f["b1"]["p99_ms"], "ms"),
        _row("fastapi_b1_c1_p50", f["b1_single"]["p50_ms"], "ms"),
        _row("bentoml_vs_fastapi_b1_throughput", ratio, "x", ">= 1.0x at equal or better p99",
             ratio >= 1.0 and p99_ok,
             note=f"p99 {b['b1']['p99_ms']:.1f} ms vs {f['b1']['p99_ms']:.1f} ms"),
        _row("raw_b1_p50", raw["b1"]["p50_ms"], "ms", note="in-process Booster.predict"),
        _row("raw_b1000_rows_per_s", raw["b1000"]["rows_per_s"], "rows/s",
             note="in-process Booster.predict, 1,000-row calls"),
        _row("bentoml_b1000_rows_per_s", b["b1000"]["rows_per_s"], "rows/s",
             note="/predict, 1,000 records per call, 2 clients"),
        _row("bentoml_b1000_batch_endpoint_rows_per_s", b["b1000_batch"]["rows_per_s"], "rows/s",
             note="/predict_batch (adaptive batching), 2 clients; p50 "
                  f"{b['b1000_batch']['p50_ms']:.0f} ms"),
        _row("bentoml_b1000_p50", b["b1000"]["p50_ms"], "ms"),
        _row("bentoml_b1000_p99", b["b1000"]["p99_ms"], "ms"),
        _row("fastapi_b1000_rows_per_s", f["b1000"]["rows_per_s"], "rows/s"),
        _row("bentoml_b1000_share_of_raw", share, "x", ">= 0.5", share >= 0.5,
             note="/predict rows/s over in-process Booster.predict rows/s"),
        _row("errors", sum(v["errors"] for s in served for k, v in served[s].items()
                           if k != "soak"), "requests", "0", None),
    ]  # fmt: skip
    errors = rows[-1]
    errors["met"] = errors["value"] == 0
    s = b["soak"]
    rows += [
        _row("bentoml_rss_rest", s["rest_worker_mb"], "MiB", note="serving worker at rest"),
        _row("bentoml_rss_tree_rest", s["rest_tree_mb"], "MiB", note="bentoml serve, all procs"),
        _row("bentoml_rss_load_peak", s["load_peak_worker_mb"], "MiB",
             note=f"worker under 4 clients for {s['seconds']:.0f} s ({mode}), "
                  f"{s['requests']} requests, {s['errors']} errors"),
        _row("bentoml_rss_growth_under_load", s["growth_mb"], "MiB",
             note="last sample minus the one a quarter in: a leak shows here"),
    ]  # fmt: skip
    return rows


def cleanup_home(home: Path) -> None:
    """Remove a temporary home :func:`prepare` made (nothing else)."""
    import shutil

    if home.name.startswith("driftloop-bench-serving-") and home.parent == Path(
        tempfile.gettempdir()
    ):
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seconds, for a smoke run")
    parser.add_argument("--soak-seconds", type=float, help="override the memory soak duration")
    parser.add_argument("--loadgen", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loadgen:
        return _loadgen_main(args.loadgen)
    rows = run(quick=args.quick, soak_seconds=args.soak_seconds)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{AREA}.json").write_text(json.dumps(rows, indent=2))
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        met = {True: "met", False: "NOT MET", None: ""}[r["met"]]
        print(f"{r['name']:<{width}}  {r['value']!s:>12} {r['unit']:<7} {r['target'] or '':<32} "
              f"{met:<8} {r['note']}")  # fmt: skip


if __name__ == "__main__":
    main()
