"""Computational monitoring of each serving worker: CPU, memory, uptime, the models it serves.

Under ``bentoml serve`` (``PROMETHEUS_MULTIPROC_DIR`` set) prometheus_client's own process
collector is not exported: ``/metrics`` is assembled from the workers' shared files. So each
worker samples itself on a timer thread (every few seconds, off the request path) into
``liveall`` gauges, which the multiprocess collector labels with the worker's ``pid``. The same
thread publishes what the alias index names and the latest monitor report
(:mod:`bentos.report_metrics`).

Series (each with ``pid`` under ``bentoml serve``): ``driftloop_process_cpu_seconds`` (user +
system, cumulative: use ``rate()``), ``driftloop_process_resident_memory_bytes``,
``driftloop_process_start_time_seconds``, ``driftloop_process_uptime_seconds``,
``driftloop_process_open_fds``, ``driftloop_process_threads``;
``driftloop_model_info{alias, model_tag}``: 1 for the model the worker serves under the alias,
0 for one it served before; ``driftloop_registry_alias_info{alias, model_tag}``: the same for
what the alias index names. The two differ while a swap is pending or after a load failed.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from bentos.background import Every
from bentos.report_metrics import (
    ReportGauges,
    latest_report,
    monitor_reports_dir,
    read_snapshot,
    report_gauges,
)
from tasks.registry import CHALLENGER, CHAMPION, get_alias, tag_of

if TYPE_CHECKING:
    import psutil
    from prometheus_client import CollectorRegistry, Gauge

    from bentos.runtime import Models
    from tasks.settings import Settings

log = logging.getLogger("driftloop.serving")

SAMPLE_SECONDS = 5.0
SETTLE_NS = 1_000_000_000


@dataclass(frozen=True)
class ProcessSample:
    """One reading of this process's resources."""

    cpu_seconds: float
    resident_memory_bytes: float
    start_time_seconds: float
    uptime_seconds: float
    open_fds: float
    threads: float


def sample_process(process: psutil.Process | None = None) -> ProcessSample:
    """CPU seconds, resident memory, start time, uptime, open files and threads (psutil)."""
    import psutil

    p = process or psutil.Process()
    with p.oneshot():
        cpu = p.cpu_times()
        started = p.create_time()
        return ProcessSample(
            cpu_seconds=cpu.user + cpu.system,
            resident_memory_bytes=float(p.memory_info().rss),
            start_time_seconds=started,
            uptime_seconds=max(time.time() - started, 0.0),
            open_fds=float(p.num_fds()) if hasattr(p, "num_fds") else math.nan,  # not on Windows
            threads=float(p.num_threads()),
        )


@dataclass(frozen=True)
class ObservedGauges:
    process: dict[str, Gauge]  # ProcessSample field -> gauge (no labels but pid)
    model_info: Gauge  # {alias, model_tag}
    alias_info: Gauge  # {alias, model_tag}
    report: ReportGauges


_PROCESS_HELP = {
    "cpu_seconds": "User and system CPU seconds of the serving worker.",
    "resident_memory_bytes": "Resident memory of the serving worker.",
    "start_time_seconds": "When the serving worker started (unix time).",
    "uptime_seconds": "Seconds since the serving worker started.",
    "open_fds": "Open file descriptors of the serving worker.",
    "threads": "Threads of the serving worker.",
}
_lock = threading.Lock()
_default: ObservedGauges | None = None


def observed_gauges(registry: CollectorRegistry | None = None) -> ObservedGauges:
    """The gauges, made on first use (after BentoML set ``PROMETHEUS_MULTIPROC_DIR``).

    With ``registry`` (tests) a fresh set registered there; else one set per process.
    """
    global _default
    if registry is not None:
        return _make_gauges(registry)
    with _lock:
        if _default is None:
            from prometheus_client import REGISTRY

            _default = _make_gauges(REGISTRY)
        return _default


def _make_gauges(reg: CollectorRegistry) -> ObservedGauges:
    from prometheus_client import Gauge

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, doc, list(labels), registry=reg, multiprocess_mode="liveall")

    info_labels = ("alias", "model_tag")
    return ObservedGauges(
        process={
            f.name: gauge(f"driftloop_process_{f.name}", _PROCESS_HELP[f.name])
            for f in fields(ProcessSample)
        },
        model_info=gauge("driftloop_model_info", "1: the model served under alias.", info_labels),
        alias_info=gauge(
            "driftloop_registry_alias_info", "1: the model the alias index names.", info_labels
        ),
        report=report_gauges(reg),
    )


class ProcessMetrics:
    """Publishes this worker's :class:`ProcessSample`, its models, the alias index's models
    and the latest monitor report, now and then every ``interval`` seconds."""

    def __init__(
        self,
        name: str,
        settings: Settings,
        models: Callable[[], Models],
        gauges: ObservedGauges | None = None,
        interval: float = SAMPLE_SECONDS,
    ) -> None:
        import psutil

        self.name = name
        self.settings = settings
        self.models = models
        self.gauges = gauges or observed_gauges()
        self.interval = interval
        self._process = psutil.Process()  # made in the worker: its own pid
        self._shown: dict[tuple[str, str], str] = {}  # (kind, alias) -> tag shown as 1
        self._report_key: int | None = -1  # the folder's mtime when last read (-1: never)
        self._every = Every(interval, self.tick, "process-metrics",
                            "process metrics update failed; trying again next time")  # fmt: skip

    def tick(self) -> ProcessSample:
        sample = sample_process(self._process)
        for attr, gauge in self.gauges.process.items():
            gauge.set(getattr(sample, attr))
        m = self.models()
        served = {CHAMPION: tag_of(m.champion), CHALLENGER: tag_of(m.challenger)}
        named = {a: get_alias(self.name, a, self.settings) for a in served}
        self._show("served", self.gauges.model_info, served)
        self._show("named", self.gauges.alias_info, named)
        self._publish_report()
        return sample

    def _show(self, kind: str, gauge: Gauge, tags: Mapping[str, str | None]) -> None:
        """1 for each alias's tag; 0 for the tag shown before (the shared file keeps every
        series it ever held, so a replaced tag is zeroed, not removed)."""
        for alias, tag in tags.items():
            key = (kind, alias)
            before = self._shown.get(key)
            if before == tag:
                continue
            if before is not None:
                gauge.labels(alias=alias, model_tag=before).set(0)
            if tag is not None:
                gauge.labels(alias=alias, model_tag=tag).set(1)
                self._shown[key] = tag
            else:
                self._shown.pop(key, None)

    def _publish_report(self) -> None:
        """Re-read the newest report when the folder changed (reports are written by rename,
        which changes the folder's mtime): no listing of a year of reports every tick."""
        folder = monitor_reports_dir(self.settings)
        try:
            key: int | None = folder.stat().st_mtime_ns
        except FileNotFoundError:
            key = None
        if key == self._report_key:
            return
        # a folder changed within the last second may change again with the same mtime (coarse
        # file-system clocks): read it again next tick; else once (a broken report: one log)
        settled = key is None or time.time_ns() - key > SETTLE_NS
        self._report_key = key if settled else -1
        path = latest_report(folder) if key is not None else None
        try:
            snapshot = read_snapshot(path, self.name)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("monitor report %s unreadable for /metrics: %s", path, exc)
            return
        self.gauges.report.publish(snapshot)

    def start(self) -> ProcessMetrics:
        self._safe_tick()  # the series exist before the first scrape
        self._every.seconds = self.interval
        self._every.start()
        return self

    def _safe_tick(self) -> None:
        try:
            self.tick()
        except Exception:
            log.exception("process metrics update failed; trying again next time")

    def stop(self) -> None:
        self._every.stop()
