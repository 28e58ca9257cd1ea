"""The service's own counters, scraped from its Prometheus ``/metrics``."""

from __future__ import annotations

from dataclasses import dataclass, fields

_PROBES = ("/metrics", "/livez", "/readyz", "/healthz")


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


def scrape_serving(url: str, timeout_s: float = 3.0) -> ServingCounters | None:
    """The service's cumulative counters now (None when it does not answer)."""
    import httpx

    try:
        answer = httpx.get(url.rstrip("/") + "/metrics", timeout=timeout_s)
        answer.raise_for_status()
        return parse_serving_metrics(answer.text)
    except (httpx.HTTPError, ValueError):
        return None
