"""Shared helpers for ``bench/bench_<area>.py`` modules: timing, memory, data, rows, results.

A benchmark module exposes ``run(quick: bool) -> list[dict]``; each row is
``{"area", "name", "value", "unit", "target", "met", "note"}`` plus optional
``"median", "spread", "n"``. Build rows with :func:`metric` (judges the target for you) or
:func:`not_available` (an honest "not measured" row: ``value`` and ``met`` are ``None``).

Timing is wall-clock (``time.perf_counter``). Compare a thing with its peer through
:func:`compare`, which runs them round-robin in one process so both see the same machine load.
Memory is measured from outside the measured process (:func:`run_measured`,
:func:`peak_rss_of`, :class:`RssSampler`): psutil samples of the whole process tree, combined
with the kernel's exact peak of the largest single process (``wait4``; what GNU time reports).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
SMOKE_DIR = RESULTS_DIR / "smoke"
REQUIRED_KEYS = ("area", "name", "value", "unit", "target", "met", "note")
OPTIONAL_KEYS = ("median", "spread", "n")
NOT_AVAILABLE = "not available yet"
QUICK_SKIP = "not measured in quick mode"
MiB = 1024**2
GiB = 1024**3
LIBRARIES = (
    "prefect", "bentoml", "polars", "pandera", "lightgbm", "optuna", "wandb", "whylogs",
    "numpy", "pandas", "pyarrow", "scikit-learn", "fastapi", "psutil", "matplotlib",
)  # fmt: skip
_TEMP_PREFIX = "driftloop-bench-"


# --- timing ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stats:
    """Summary of repeated samples: median and spread (IQR from 4 samples on, else min-max)."""

    median: float
    spread: float
    n: int
    samples: tuple[float, ...]
    spread_kind: str

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        values = [float(s) for s in samples]
        if not values:
            raise ValueError("Stats.of needs at least one sample")
        med = statistics.median(values)
        if len(values) >= 4:
            q = statistics.quantiles(values, n=4, method="inclusive")
            return cls(med, q[2] - q[0], len(values), tuple(values), "IQR")
        return cls(med, max(values) - min(values), len(values), tuple(values), "min-max")

    def scaled(self, factor: float) -> Stats:
        """The same samples multiplied by ``factor`` (e.g. seconds -> ms, time -> rows/s)."""
        return Stats.of([s * factor for s in self.samples])

    def map(self, fn: Callable[[float], float]) -> Stats:
        return Stats.of([fn(s) for s in self.samples])


def repeat(fn: Callable[[], Any], n: int, *, warmup: int = 0) -> Stats:
    """Wall time in seconds of ``fn()`` over ``n`` calls (after ``warmup`` untimed calls)."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return Stats.of(samples)


def compare(fns: Mapping[str, Callable[[], Any]], n: int, *, warmup: int = 0) -> dict[str, Stats]:
    """Time several peers side by side: round-robin, rotating the order every round.

    Returns seconds per call for each name. Use :func:`ratio` on two results for a ratio
    whose spread comes from per-round ratios (the rounds share the machine's load).
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for i in range(n):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            t0 = time.perf_counter()
            fns[name]()
            samples[name].append(time.perf_counter() - t0)
    return {name: Stats.of(values) for name, values in samples.items()}


def ratio(numerator: Stats, denominator: Stats) -> Stats:
    """Per-round ratio of two side-by-side measurements (same ``n``, same order of rounds)."""
    if numerator.n != denominator.n:
        raise ValueError("ratio needs samples from the same rounds")
    return Stats.of([a / b for a, b in zip(numerator.samples, denominator.samples, strict=True)])


# --- rows -----------------------------------------------------------------------------------
_TARGET = re.compile(
    r"^\s*(?P<op>≤|<=|<|≥|>=|>|==|=)\s*(?P<num>[-+]?\d[\d_,]*(?:\.\d+)?(?:[eE][-+]?\d+)?)"
    r"\s*(?P<unit>.*?)\s*$"
)
_OPS: dict[str, Callable[[float, float], bool]] = {
    "≤": lambda v, t: v <= t,
    "<=": lambda v, t: v <= t,
    "<": lambda v, t: v < t,
    "≥": lambda v, t: v >= t,
    ">=": lambda v, t: v >= t,
    ">": lambda v, t: v > t,
    "==": lambda v, t: v == t,
    "=": lambda v, t: v == t,
}


@dataclass(frozen=True)
class Target:
    """A parsed target such as ``"≤ 1536 MiB"``: comparator, threshold, unit (may be empty)."""

    op: str
    threshold: float
    unit: str

    def met(self, value: float) -> bool:
        return bool(_OPS[self.op](value, self.threshold))

    def gap(self, value: float) -> float:
        """Signed distance from the threshold, positive when on the wrong side."""
        return value - self.threshold if self.op in ("≤", "<=", "<") else self.threshold - value


def parse_target(target: str | None) -> Target | None:
    """``"≤ 1536 MiB"`` -> Target; ``None`` or free text (no comparator) -> ``None``."""
    if not target:
        return None
    m = _TARGET.match(target)
    if not m:
        return None
    num = float(m["num"].replace("_", "").replace(",", ""))
    return Target(m["op"], num, m["unit"])


def judge(value: float | None, target: str | None, unit: str | None = None) -> bool | None:
    """Whether ``value`` meets ``target``; ``None`` when there is no value or no target.

    The target's number is in the row's unit; a target naming another unit is a bug in the
    benchmark and raises (a wrong unit would silently turn a miss into a pass).
    """
    parsed = parse_target(target)
    if value is None or parsed is None or _is_nan(value):
        return None
    if unit is not None and parsed.unit and parsed.unit != unit:
        raise ValueError(f"target {target!r} is not in the row's unit {unit!r}")
    return parsed.met(float(value))


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def metric(
    area: str,
    name: str,
    value: float | None,
    unit: str,
    *,
    target: str | None = None,
    note: str = "",
    stats: Stats | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One result row; ``met`` is judged from ``value`` and ``target``.

    With ``stats`` the row carries ``median``, ``spread`` and ``n`` (``value`` defaults to the
    median when ``None`` is passed).
    """
    if value is None and stats is not None:
        value = stats.median
    row: dict[str, Any] = {
        "area": area,
        "name": name,
        "value": _clean(value),
        "unit": unit,
        "target": target,
        "met": judge(value, target, unit),
        "note": note,
    }
    if stats is not None:
        row.update(median=stats.median, spread=stats.spread, n=stats.n)
        row["spread_kind"] = stats.spread_kind
    row.update(extra)
    return row


def not_available(
    area: str,
    name: str,
    unit: str,
    why: str,
    *,
    target: str | None = None,
    prefix: str = NOT_AVAILABLE,
) -> dict[str, Any]:
    """A row for something not measured: no value, ``met`` is ``None`` (never counted as met).

    The note reads ``"<prefix>: <why>"`` (prefix "not available yet" unless told otherwise).
    """
    note = why if why.startswith(prefix) else f"{prefix}: {why}"
    return {
        "area": area,
        "name": name,
        "value": None,
        "unit": unit,
        "target": target,
        "met": None,
        "note": note,
    }


def _clean(value: Any) -> Any:
    if value is None:
        return None
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return value


def validate_rows(rows: Any, area: str | None = None) -> list[str]:
    """Problems with a module's rows (empty list when they follow the protocol)."""
    if not isinstance(rows, list) or not rows:
        return ["run() must return a non-empty list of row dicts"]
    problems = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            problems.append(f"row {i} is not a dict")
            continue
        missing = [k for k in REQUIRED_KEYS if k not in row]
        if missing:
            problems.append(f"row {i} ({row.get('name')!r}) lacks {', '.join(missing)}")
        if area is not None and row.get("area") not in (None, area):
            problems.append(f"row {i} has area {row.get('area')!r}, expected {area!r}")
        if row.get("met") not in (True, False, None):
            problems.append(f"row {i} has met={row.get('met')!r}: must be true, false or null")
        if row.get("met") is not None and row.get("value") is None:
            problems.append(f"row {i} claims met={row['met']} without a value")
    return problems


# --- memory, measured from outside ----------------------------------------------------------
def _tree(pid: int) -> list[Any]:
    """A process and all its descendants (empty when it is gone)."""
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def tree_rss(pid: int, seen: dict[int, float] | None = None) -> int:
    """Resident bytes of a process and all its descendants (0 when it is gone).

    ``seen`` collects ``pid -> create_time`` of every process found, so whoever started the
    tree can later stop descendants that left it (see :func:`stop_leftovers`).
    """
    import psutil

    total = 0
    for proc in _tree(pid):
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
            if seen is not None and proc.pid not in seen:
                seen[proc.pid] = proc.create_time()
    return total


def stop_leftovers(seen: Mapping[int, float], timeout: float = 10.0) -> int:
    """Stop processes recorded in ``seen`` that still run (same pid *and* start time, so a
    recycled pid is never touched): SIGTERM, wait, SIGKILL. Returns how many were running.

    A benchmark's child may start servers in their own session (``start_new_session``); if the
    child dies or is killed, those servers are re-parented and outlive it unless stopped here.
    """
    import psutil

    alive = []
    for pid, created in seen.items():
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            if abs(proc.create_time() - created) < 0.01 and proc.status() != "zombie":
                alive.append(proc)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, still = psutil.wait_procs(alive, timeout=timeout)
    for proc in still:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(still, timeout=5)
    return len(alive)


class RssSampler:
    """Samples the RSS of a process tree in a background thread (a context manager).

    ``timeline`` holds ``(seconds since start, bytes)``; ``peak`` is the largest sample;
    ``seen`` maps every pid found in the tree to its start time.
    """

    def __init__(self, pid: int, interval: float = 0.05):
        self.pid = pid
        self.interval = interval
        self.timeline: list[tuple[float, int]] = []
        self.seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._t0 = time.perf_counter()

    def _loop(self) -> None:
        while not self._stop.is_set():
            rss = tree_rss(self.pid, self.seen)
            if rss:
                self.timeline.append((time.perf_counter() - self._t0, rss))
            self._stop.wait(self.interval)

    @property
    def peak(self) -> int:
        return max((rss for _, rss in self.timeline), default=0)

    def __enter__(self) -> RssSampler:
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@dataclass
class ProcessRun:
    """A finished command measured from outside."""

    cmd: list[str]
    returncode: int
    wall_s: float
    peak_rss: int  # bytes: max(sampled tree peak, kernel peak of the largest single process)
    sampled_tree_peak: int
    kernel_maxrss: int
    stdout: str
    stderr: str
    timed_out: bool = False
    timeline: list[tuple[float, int]] = field(default_factory=list)

    def check(self) -> ProcessRun:
        """Raise when the command failed, so no number from a failed run is ever reported."""
        if self.timed_out or self.returncode != 0:
            why = "timed out" if self.timed_out else f"exit code {self.returncode}"
            tail = (self.stderr or self.stdout).strip().splitlines()[-15:]
            raise RuntimeError(f"{' '.join(self.cmd)} failed ({why}):\n" + "\n".join(tail))
        return self


def gnu_time() -> str | None:
    """Path of GNU ``time`` (it reports a clean kernel peak RSS of the command), else None."""
    path = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    if path is None:
        return None
    try:
        probe = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return path if "GNU" in (probe.stdout + probe.stderr) else None


def run_measured(
    cmd: Sequence[str],
    env: Mapping[str, str | None] | None = None,
    *,
    cwd: str | Path | None = None,
    timeout: float | None = None,
    interval: float = 0.05,
    log: Path | None = None,
) -> ProcessRun:
    """Run ``cmd`` in its own process group; measure wall time and peak RSS from outside.

    ``env`` is merged over the current environment (a ``None`` value removes the variable).
    With ``log``, stdout and stderr go to that file (``stdout``/``stderr`` hold its tail).
    The peak is the larger of psutil samples of the whole tree (every ``interval`` s) and,
    when GNU ``time`` is installed, the kernel's
    exact peak RSS of the largest single process in the tree (``time -f %M``). The command runs
    under ``time`` rather than being forked from this process because a forked child inherits
    its parent's high-water mark, which would pollute the kernel figure. On timeout the
    process group is killed and ``timed_out`` is set.
    """
    cmd = [str(c) for c in cmd]
    full_env = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    timer_bin = gnu_time()
    with (
        open(log, "w+b") if log else tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile(suffix=".maxrss") as maxrss_file,
    ):
        launch = [timer_bin, "-f", "%M", "-o", maxrss_file.name, *cmd] if timer_bin else cmd
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            launch,
            stdout=out,
            stderr=subprocess.STDOUT if log else err,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )
        timed_out = threading.Event()

        sampler = RssSampler(proc.pid, interval)

        def _kill() -> None:
            timed_out.set()
            tree_rss(proc.pid, sampler.seen)  # record the tree as it is at the kill
            _kill_group(proc.pid)
            stop_leftovers(sampler.seen, timeout=0)

        timer = threading.Timer(timeout, _kill) if timeout else None
        with sampler:
            if timer:
                timer.start()
            proc.wait()
            wall = time.perf_counter() - t0
        if timer:
            timer.cancel()
        # whatever the command started and left behind, in its group or in its own session
        _kill_group(proc.pid, signal.SIGTERM)
        sampler.seen.pop(proc.pid, None)
        stop_leftovers(sampler.seen)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
        if log:
            stdout, stderr = "", stdout[-20_000:]
        kernel = _read_maxrss(Path(maxrss_file.name)) if timer_bin else 0
    return ProcessRun(
        cmd=cmd,
        returncode=proc.returncode,
        wall_s=wall,
        peak_rss=max(kernel, sampler.peak),
        sampled_tree_peak=sampler.peak,
        kernel_maxrss=kernel,
        stdout=stdout,
        stderr=stderr,
        timed_out=timed_out.is_set(),
        timeline=sampler.timeline,
    )


def _read_maxrss(path: Path) -> int:
    # GNU time writes "Command terminated by signal N" before the figure when killed.
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    with contextlib.suppress(IndexError, ValueError):
        return int(lines[-1].strip()) * 1024  # KiB
    return 0


def _kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def peak_rss_of(
    cmd: Sequence[str], env: Mapping[str, str] | None = None, *, timeout: float | None = None
) -> int:
    """Peak resident bytes of ``cmd`` (and its children), measured from outside.

    Raises ``RuntimeError`` if the command fails: a failed run has no honest peak.
    """
    return run_measured(cmd, env, timeout=timeout).check().peak_rss


# --- machine --------------------------------------------------------------------------------
def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def library_versions(names: Sequence[str] = LIBRARIES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine_facts() -> dict[str, Any]:
    """CPU model, cores, memory, OS, Python and the versions of the libraries that matter."""
    import psutil

    mem = psutil.virtual_memory()
    return {
        "cpu_model": _cpu_model(),
        "cores_logical": psutil.cpu_count(logical=True),
        "cores_physical": psutil.cpu_count(logical=False),
        "memory_total_bytes": mem.total,
        "memory_available_bytes": mem.available,
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "libraries": library_versions(),
    }


# --- synthetic data -------------------------------------------------------------------------
@dataclass(frozen=True)
class SyntheticColumn:
    name: str
    kind: str  # "id" | "float" | "int" | "category" | "target"
    categories: tuple[str, ...] | None = None


SYNTH_TARGET = "target"
SYNTH_POSITIVE = "Yes"


def synthetic_layout(cols: int) -> list[SyntheticColumn]:
    """Columns of :func:`synthetic_table`: an id, ``cols`` features (about 60% numeric, 40%
    categorical with 3–12 levels) and a binary ``target``."""
    if cols < 2:
        raise ValueError("synthetic tables need at least 2 feature columns")
    layout = [SyntheticColumn("row_id", "id")]
    for i in range(cols):
        if i % 5 in (1, 3):
            levels = 3 + (i * 7) % 10
            cats = tuple(f"c{i}_{j}" for j in range(levels))
            layout.append(SyntheticColumn(f"cat_{i}", "category", cats))
        elif i % 5 == 4:
            layout.append(SyntheticColumn(f"int_{i}", "int"))
        else:
            layout.append(SyntheticColumn(f"num_{i}", "float"))
    layout.append(SyntheticColumn(SYNTH_TARGET, "target", ("No", SYNTH_POSITIVE)))
    return layout


def synthetic_table(rows: int, cols: int = 20, seed: int = 0):
    """A polars frame of ``rows`` rows: id, mixed numeric/categorical features, binary target.

    The target depends on a few features through a logistic link, so a model can learn it
    (AUC well above 0.5) and training time is representative. Floats have ~1% nulls.
    """
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {}
    logit = np.zeros(rows)
    for i, col in enumerate(synthetic_layout(cols)):
        if col.kind == "id":
            data[col.name] = np.arange(rows, dtype=np.int64)
        elif col.kind == "float":
            x = rng.normal(loc=i, scale=1.0 + i % 3, size=rows)
            logit += 0.4 * (x - i) / (1.0 + i % 3) * (1 if i % 2 else -1) * (i < 8)
            x[rng.random(rows) < 0.01] = np.nan
            data[col.name] = pl.Series(col.name, x, nan_to_null=True)
        elif col.kind == "int":
            x = rng.poisson(lam=3 + i % 7, size=rows).astype(np.int64)
            logit += 0.1 * (x - (3 + i % 7)) * (i < 10)
            data[col.name] = x
        elif col.kind == "category":
            assert col.categories is not None
            codes = rng.integers(0, len(col.categories), size=rows)
            logit += 0.3 * (codes == 0) * (i < 10)
            data[col.name] = pl.Series(col.name, col.categories).gather(codes)
    p = 1.0 / (1.0 + np.exp(-(logit - 1.0)))
    positive = (rng.random(rows) < p).astype(np.int64)
    data[SYNTH_TARGET] = pl.Series(SYNTH_TARGET, ["No", SYNTH_POSITIVE]).gather(positive)
    return pl.DataFrame(data)


def synthetic_schema_source(cols: int = 20, name: str = "synthetic") -> str:
    """Source of a dataset module (``schemas``-style) matching :func:`synthetic_table`, written
    by the same renderer as ``driftloop schema infer`` (``tasks.infer.render_module``)."""
    from schemas.base import DEFAULT_NULL_MARKERS
    from tasks.infer import InferredColumn, InferredSchema, render_module

    columns = []
    for col in synthetic_layout(cols):
        if col.kind in ("id", "int"):
            columns.append(InferredColumn(col.name, "int", nullable=False, min_value=0))
        elif col.kind == "float":
            columns.append(InferredColumn(col.name, "float", nullable=True))
        else:
            categories = list(col.categories or ())
            columns.append(InferredColumn(col.name, "category", False, categories))
    schema = InferredSchema(
        name=name, target=SYNTH_TARGET, task="binary", positive_class=SYNTH_POSITIVE,
        id_column="row_id", event_time=None, null_markers=list(DEFAULT_NULL_MARKERS),
        columns=columns, source=f"the benchmark table {name!r} (bench.harness)",
    )  # fmt: skip
    return render_module(schema)


def write_synthetic(
    directory: Path, rows: int, cols: int = 20, seed: int = 0, name: str = "synthetic"
) -> tuple[Path, Path]:
    """Write ``<name>.csv`` (rows) and ``<name>.py`` (its contract) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    csv = directory / f"{name}.csv"
    module = directory / f"{name}.py"
    synthetic_table(rows, cols, seed).write_csv(csv)
    module.write_text(synthetic_schema_source(cols, name))
    return csv, module


# --- isolation and results ------------------------------------------------------------------
def make_temp_base() -> Path:
    """A fresh temporary directory for one benchmark run (remove it with :func:`remove_temp`)."""
    return Path(tempfile.mkdtemp(prefix=_TEMP_PREFIX))


def bench_env(base: Path, quick: bool = False) -> dict[str, str]:
    """Environment for a benchmark whose state lives under ``base``: ``DRIFTLOOP_HOME`` and
    every library's state below ``base/home``, generated inputs in ``base/scratch``."""
    from tasks.settings import Settings

    env: dict[str, str] = Settings(home=base / "home").library_env()
    env.pop("PREFECT_API_URL", None)
    env.update(
        DRIFTLOOP_BENCH_SCRATCH=str(base / "scratch"),
        WANDB_MODE=os.environ.get("WANDB_MODE") or ("disabled" if quick else "offline"),
        WANDB_SILENT="true",
        WHYLOGS_NO_ANALYTICS="True",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL=os.environ.get("PREFECT_LOGGING_LEVEL", "WARNING"),
        PYTHONUNBUFFERED="1",
    )
    return env


@contextlib.contextmanager
def isolated_home(quick: bool = False) -> Iterator[Path]:
    """A throwaway ``DRIFTLOOP_HOME`` (and every library's state under it) for one benchmark.

    Sets this process's environment (children inherit it), restores it afterwards and removes
    the directory. ``PREFECT_API_URL`` is unset so nothing reports into a live server.
    """
    base = make_temp_base()
    saved = dict(os.environ)
    try:
        os.environ.update(bench_env(base, quick))
        os.environ.pop("PREFECT_API_URL", None)
        from tasks.settings import get_settings

        get_settings().ensure_dirs()
        (base / "scratch").mkdir(exist_ok=True)
        yield base / "home"
    finally:
        os.environ.clear()
        os.environ.update(saved)
        remove_temp(base)


def remove_temp(path: Path) -> None:
    """Delete a directory this module created (and nothing else)."""
    path = Path(path).resolve()
    tmp = Path(tempfile.gettempdir()).resolve()
    if path.parent != tmp or not path.name.startswith(_TEMP_PREFIX):
        raise RuntimeError(f"refusing to delete {path}: not a benchmark temp directory")
    shutil.rmtree(path, ignore_errors=True)


def scratch_dir() -> Path:
    """Where to put generated inputs (CSV files, schema modules) for this benchmark run."""
    env = os.environ.get("DRIFTLOOP_BENCH_SCRATCH")
    if env:
        path = Path(env)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return Path(tempfile.mkdtemp(prefix=_TEMP_PREFIX))


def results_dir(quick: bool = False) -> Path:
    """Where result files and plots go: ``bench/results/`` (full runs),
    ``bench/results/smoke/`` (quick runs), or what ``bench.run --out-dir`` chose."""
    env = os.environ.get("DRIFTLOOP_BENCH_RESULTS")
    path = Path(env) if env else SMOKE_DIR if quick else RESULTS_DIR
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_area_results(
    area: str, rows: list[dict[str, Any]], quick: bool = False, out: Path | None = None
) -> Path:
    """Write ``rows`` to ``bench/results/<area>.json`` (``smoke/`` in quick mode)."""
    problems = validate_rows(rows, area)
    if problems:
        raise ValueError(f"bench area {area!r}: " + "; ".join(problems))
    path = out or results_dir(quick) / f"{area}.json"
    doc = {
        "area": area,
        "quick": quick,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows": rows,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=_json_default) + "\n")
    os.replace(tmp, path)
    return path


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def main(area: str, run: Callable[[bool], list[dict[str, Any]]], argv: list[str] | None = None):
    """Entry point for ``python -m bench.bench_<area> [--quick]``: run in an isolated home,
    write ``bench/results/<area>.json`` and print the rows."""
    parser = argparse.ArgumentParser(prog=f"python -m bench.bench_{area}")
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    args = parser.parse_args(argv)
    with isolated_home(args.quick):
        rows = run(args.quick)
    path = write_area_results(area, rows, args.quick)
    for row in rows:
        value = row["value"]
        shown = "—" if value is None else f"{value:.4g}" if isinstance(value, float) else value
        target = f" (target {row['target']}: {row['met']})" if row.get("target") else ""
        print(f"{row['name']}: {shown} {row['unit']}{target}  {row.get('note', '')}")
    print(f"wrote {path}", file=sys.stderr)


@contextlib.contextmanager
def temporary_prefect_server(startup_timeout_s: float = 120.0) -> Iterator[str]:
    """A real, throwaway Prefect server (SQLite under ``PREFECT_HOME``) for this process.

    Yields its API URL; this process's Prefect client points at it while the block runs, and
    subprocesses reach it when given ``PREFECT_API_URL``.
    """
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=int(startup_timeout_s)):
        yield str(PREFECT_API_URL.value())


def quick_skip(
    area: str, name: str, unit: str, why: str = "full run only", *, target: str | None = None
) -> dict[str, Any]:
    """A "not measured in quick mode" row (the full run measures it)."""
    return not_available(area, name, unit, why, target=target, prefix=QUICK_SKIP)
