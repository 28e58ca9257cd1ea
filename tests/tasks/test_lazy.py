"""tasks.lazy.once: built on first use, once, even when threads arrive together."""

from __future__ import annotations

import threading
import time

from tasks.lazy import once


def test_once_builds_on_first_call_and_returns_the_same_object():
    calls: list[int] = []

    @once
    def build() -> dict:
        calls.append(1)
        return {"n": len(calls)}

    assert calls == []  # nothing at decoration (import) time
    first = build()
    assert build() is first
    assert calls == [1]
    assert build.__name__ == "build"


def test_once_builds_once_when_threads_arrive_together():
    calls: list[int] = []
    start = threading.Barrier(8)

    @once
    def build() -> object:
        calls.append(1)
        time.sleep(0.05)  # widen the window in which a second builder would enter
        return object()

    results: list[object] = []

    def worker() -> None:
        start.wait()
        results.append(build())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1]
    assert len(results) == 8 and all(r is results[0] for r in results)
