"""How long a one-record request waits for its prediction-log row, in-process: ``logged(
log.append(batch))`` as ``/predict`` awaits it, one client, in each durability mode.

    python -m bench.predlog_ack [requests]

Works on trees before the durability knob too (it then measures their one mode), so two trees
can be compared with ``PYTHONPATH=<tree>``. A probe for docs/reliability.md, not a benchmark
area of ``bench.run``.
"""

from __future__ import annotations

import asyncio
import inspect
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from bentos.runtime import logged
from tasks.buffered_log import BufferedLog
from tasks.predlog import ScoredBatch, prediction_frame

THINK_S = 0.001  # the client's pause between requests
ROW = pl.DataFrame(  # one Telco-shaped record: 20 columns, strings, integers, floats
    {f"s{i}": ["Yes"] for i in range(16)} | {"tenure": [12], "senior": [0]}
    | {"monthly": [70.35], "total": [845.5]}
)  # fmt: skip


def _batch() -> ScoredBatch:
    return ScoredBatch(ROW, ["r1"], ["e1"], datetime.now(UTC), "telco:probe", np.array([0.3]),
                       np.array([False]), 1.2)  # fmt: skip


def _modes() -> dict[str, dict]:
    if "encode" not in inspect.signature(BufferedLog).parameters:
        return {"this tree (frame + IPC + fsync per commit)": {}}
    from tasks.predlog import decode_batches, encode_batch

    codec = {"encode": encode_batch, "decode": decode_batches}
    return {"write": {**codec, "fsync": False}, "fsync": {**codec, "fsync": True}}


async def _requests(log: BufferedLog, n: int) -> list[float]:
    waits = []
    for _ in range(n):
        t0 = time.perf_counter()
        assert await logged(log.append(_batch(), 1)) is None
        waits.append(time.perf_counter() - t0)
        await asyncio.sleep(THINK_S)
    return waits


def main(n: int = 500) -> None:
    for name, options in _modes().items():
        folder = Path(tempfile.mkdtemp(prefix="predlog-ack-"))
        try:
            log = BufferedLog(folder, prediction_frame, prefix="p", **options).start()
            waits = sorted(asyncio.run(_requests(log, n)))
            log.close()
        finally:
            shutil.rmtree(folder)
        p50, p90, p99 = (waits[int(q * (n - 1))] * 1e3 for q in (0.5, 0.9, 0.99))
        print(f"{name:45s} p50 {p50:.3f} ms  p90 {p90:.3f} ms  p99 {p99:.3f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
