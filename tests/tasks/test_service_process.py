"""tasks.monitoring.serving: the service's process series, parsed from what
bentos.process_metrics exports."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from bentos.process_metrics import observed_gauges, sample_process
from tasks.monitoring.serving import parse_process_metrics, parse_serving_metrics

TWO_WORKERS = """
# HELP driftloop_process_cpu_seconds User and system CPU seconds of the serving worker.
# TYPE driftloop_process_cpu_seconds gauge
driftloop_process_cpu_seconds{pid="11"} 2.5
driftloop_process_cpu_seconds{pid="12"} 1.5
# TYPE driftloop_process_resident_memory_bytes gauge
driftloop_process_resident_memory_bytes{pid="11"} 1.048576e+08
driftloop_process_resident_memory_bytes{pid="12"} 5.24288e+07
# TYPE driftloop_process_uptime_seconds gauge
driftloop_process_uptime_seconds{pid="11"} 300.0
driftloop_process_uptime_seconds{pid="12"} 30.0
# TYPE driftloop_process_threads gauge
driftloop_process_threads{pid="11"} 8.0
driftloop_process_threads{pid="12"} 6.0
# TYPE driftloop_model_info gauge
driftloop_model_info{alias="champion",model_tag="telco:new",pid="11"} 1.0
driftloop_model_info{alias="champion",model_tag="telco:old",pid="11"} 0.0
driftloop_model_info{alias="champion",model_tag="telco:old",pid="12"} 1.0
"""


def test_two_workers_sum_resources_and_show_a_pending_swap():
    p = parse_process_metrics(TWO_WORKERS)
    assert p is not None and p.workers == 2
    assert (p.cpu_seconds, p.resident_memory_bytes, p.threads) == (4.0, 157286400.0, 14.0)
    assert p.uptime_seconds == 30.0  # the youngest worker
    assert p.served == {"champion": ["telco:new", "telco:old"]}  # one swapped, one not yet
    assert not p.serves("champion", "telco:new")
    assert parse_serving_metrics(TWO_WORKERS).requests == 0  # the counters ignore them


def test_what_the_exporter_writes_parses_back():
    reg = CollectorRegistry()
    gauges = observed_gauges(reg)
    sample = sample_process()
    for attr, gauge in gauges.process.items():
        gauge.set(getattr(sample, attr))
    gauges.model_info.labels(alias="champion", model_tag="telco:v1").set(1)
    p = parse_process_metrics(generate_latest(reg).decode())
    assert p is not None and p.workers == 1
    assert p.resident_memory_bytes == sample.resident_memory_bytes > 0
    assert p.serves("champion", "telco:v1") and p.threads >= 1


def test_no_process_series_is_none():
    assert parse_process_metrics("# nothing here\n") is None


def test_scrape_reads_a_service_on_loopback_and_tolerates_none():
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tasks.monitoring.serving import scrape_process

    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = TWO_WORKERS.encode()
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        p = scrape_process(url)
        assert p is not None and p.workers == 2 and p.uptime_seconds == 30.0
    finally:
        server.shutdown()
        server.server_close()
    assert scrape_process(None) is None
    assert scrape_process(url, timeout_s=0.5) is None  # nothing listens any more
