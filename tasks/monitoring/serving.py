"""The service's own counters, scraped from its Prometheus ``/metrics``."""

from __future__ import annotations

from dataclasses import dataclass, fields

_PROBES = ("/metrics", "/livez", "/readyz", "/healthz")


def service_url(url: str) -> str:
    """The service's base URL as the monitor uses it: http(s), a host, a valid port, no query
    or fragment; returned without a trailing slash. A ValueError names what is wrong."""
    from urllib.parse import urlsplit

    parts = urlsplit(url.strip())
    try:
        parts.port  # noqa: B018 - raises ValueError on a port out of range or not a number
    except ValueError:
        raise ValueError(f"{url!r} has an invalid port (1-65535)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL with a host, e.g. http://127.0.0.1:3000")
    if parts.query or parts.fragment:
        raise ValueError(f"{url!r} is a base URL: no query or fragment")
    return url.strip().rstrip("/")


@dataclass(frozen=True)
class ServingCounters:
    """Request counts from the service's Prometheus ``/metrics`` (cumulative or a delta)."""

    requests: float = 0.0
    client_errors: float = 0.0
    server_errors: float = 0.0
    validation_failures: float = 0.0

    def minus(self, before: ServingCounters) -> ServingCounters:
        """The counts since ``before``; a counter that went down (restart) counts from 0."""
        names = [f.name for f in fields(self)]
        now, then = [getattr(self, f) for f in names], [getattr(before, f) for f in names]
        if any(a < b for a, b in zip(now, then, strict=True)):
            return self
        return ServingCounters(*(a - b for a, b in zip(now, then, strict=True)))


def parse_serving_metrics(text: str) -> ServingCounters:
    """BentoML's ``*_request_total`` (by status) and driftloop's validation-failure counter."""
    from prometheus_client.parser import text_string_to_metric_families

    totals = {"requests": 0.0, "client_errors": 0.0, "server_errors": 0.0, "failures": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "driftloop_validation_failures_total":
                totals["failures"] += sample.value
            code = str(sample.labels.get("http_response_code", ""))
            if not (sample.name.endswith("_request_total") and code):
                continue
            if sample.labels.get("endpoint") in _PROBES:
                continue
            totals["requests"] += sample.value
            key = {"4": "client_errors", "5": "server_errors"}.get(code[:1])
            if key:
                totals[key] += sample.value
    return ServingCounters(
        totals["requests"], totals["client_errors"], totals["server_errors"], totals["failures"]
    )


def fetch_metrics(url: str, timeout_s: float = 3.0) -> str | None:
    """The service's ``/metrics`` text (None when it does not answer)."""
    import httpx

    try:
        answer = httpx.get(url.rstrip("/") + "/metrics", timeout=timeout_s)
        answer.raise_for_status()
        return answer.text
    except httpx.HTTPError:
        return None


def scrape_serving(url: str, timeout_s: float = 3.0) -> ServingCounters | None:
    """The service's cumulative counters now (None when it does not answer)."""
    text = fetch_metrics(url, timeout_s)
    try:
        return parse_serving_metrics(text) if text is not None else None
    except ValueError:
        return None


# --- the service's processes (bentos/process_metrics.py) ------------------------------------

_PROCESS = "driftloop_process_"


@dataclass(frozen=True)
class ServiceProcess:
    """The serving workers' resources and models, from ``driftloop_process_*`` and
    ``driftloop_model_info`` (one series per worker ``pid`` under ``bentoml serve``)."""

    workers: int
    cpu_seconds: float  # user + system, summed over workers, cumulative
    resident_memory_bytes: float  # summed over workers
    uptime_seconds: float | None  # the youngest worker's
    threads: float
    served: dict[str, list[str]]  # alias -> model tags some worker serves now

    def serves(self, alias: str, tag: str) -> bool:
        """Every worker's model under ``alias`` is ``tag`` (False if any serves another)."""
        return self.served.get(alias, []) == [tag]


def parse_process_metrics(text: str) -> ServiceProcess | None:
    """The process series of a ``/metrics`` text (None when the service exports none)."""
    from prometheus_client.parser import text_string_to_metric_families

    per_pid: dict[str, dict[str, float]] = {}
    served: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith(_PROCESS):
                per_pid.setdefault(s.labels.get("pid", ""), {})[s.name[len(_PROCESS) :]] = s.value
            elif s.name == "driftloop_model_info" and s.value == 1:
                served.setdefault(s.labels.get("alias", ""), set()).add(s.labels["model_tag"])
    if not per_pid:
        return None
    workers = list(per_pid.values())
    uptimes = [w["uptime_seconds"] for w in workers if "uptime_seconds" in w]
    return ServiceProcess(
        workers=len(workers),
        cpu_seconds=sum(w.get("cpu_seconds", 0.0) for w in workers),
        resident_memory_bytes=sum(w.get("resident_memory_bytes", 0.0) for w in workers),
        uptime_seconds=min(uptimes) if uptimes else None,
        threads=sum(w.get("threads", 0.0) for w in workers),
        served={alias: sorted(tags) for alias, tags in sorted(served.items())},
    )


def scrape_process(url: str | None, timeout_s: float = 3.0) -> ServiceProcess | None:
    """The service's process series now (None without a URL, an answer or the series)."""
    text = fetch_metrics(url, timeout_s) if url else None
    try:
        return parse_process_metrics(text) if text is not None else None
    except ValueError:
        return None
