"""The durable log: an entry whose future resolved survives SIGKILL; journals recover once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl

from tasks.buffered_log import BufferedLog, read_journal, recover_orphans

REPO = Path(__file__).parents[2]


def _frames(entries: list[list[str]]) -> pl.DataFrame:
    return pl.DataFrame({"request_id": [i for e in entries for i in e]})


def test_acknowledged_entries_survive_sigkill(tmp_path: Path):
    """Every id whose future resolved before the kill is found after recovery (no Parquet yet)."""
    script = textwrap.dedent(
        f"""
        import itertools, sys, polars as pl
        from pathlib import Path
        from tasks.buffered_log import BufferedLog
        log = BufferedLog(Path({str(tmp_path)!r}),
                          lambda es: pl.DataFrame({{"request_id": [i for e in es for i in e]}}),
                          prefix="p", flush_seconds=3600).start()
        for i in itertools.count():
            ids = [f"{{i}}-{{j}}" for j in range(3)]
            log.append(ids, 3).result()
            sys.stdout.write(" ".join(ids) + "\\n"); sys.stdout.flush()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    acked: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(acked) < 600:
            acked += proc.stdout.readline().split()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    acked += proc.stdout.read().split()
    assert len(acked) >= 600
    assert not list(tmp_path.glob("*.parquet"))  # only the journal held them
    recovered = recover_orphans(tmp_path)
    found = set(pl.read_parquet(list(tmp_path.glob("*.parquet")))["request_id"])
    print(f"acknowledged {len(acked)}, recovered {recovered}, missing {len(set(acked) - found)}")
    assert set(acked) <= found
    assert recover_orphans(tmp_path) == 0 and not list(tmp_path.glob("*.journal"))


def test_torn_tail_is_dropped_and_live_segments_are_left_alone(tmp_path: Path):
    log = BufferedLog(tmp_path, _frames, prefix="p", flush_seconds=3600)
    log.directory.mkdir(exist_ok=True)
    log.append(["a", "b"], 2)
    log.commit()
    log.append(["c"], 1)
    log.commit()
    (journal,) = tmp_path.glob("*.journal")
    assert recover_orphans(tmp_path) == 0  # this process holds the segment's lock
    with open(journal, "ab") as fh:
        fh.write(b"\x10\x00\x00\x00garbage")  # a record cut short by a kill
    assert [f["request_id"].to_list() for f in read_journal(journal)] == [["a", "b"], ["c"]]
    log._journal.close()  # as a SIGKILL would: the lock goes with the process
    log._journal = None
    assert recover_orphans(tmp_path) == 3
    assert sorted(pl.read_parquet(list(tmp_path.glob("*.parquet")))["request_id"]) == [
        "a",
        "b",
        "c",
    ]


def test_a_crash_between_parquet_and_journal_delete_writes_nothing_twice(tmp_path: Path):
    log = BufferedLog(tmp_path, _frames, prefix="p", flush_seconds=3600)
    tmp_path.mkdir(exist_ok=True)
    log.append(["a"], 1)
    log.commit()
    journal = Path(log._journal.name)
    saved = journal.read_bytes()
    log.flush()
    journal.write_bytes(saved)  # as if the kill came before the journal was deleted
    assert recover_orphans(tmp_path) == 0
    assert pl.read_parquet(list(tmp_path.glob("*.parquet")))["request_id"].to_list() == ["a"]


def test_a_failed_write_fails_the_waiting_request(tmp_path: Path):
    calls = {"n": 0}

    def flaky(entries):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(28, "No space left on device")
        return _frames(entries)

    log = BufferedLog(tmp_path, flaky, prefix="p", flush_seconds=3600).start()
    first = log.append(["a"], 1)
    assert isinstance(first.exception(timeout=10), OSError)
    log.append(["b"], 1).result(timeout=10)
    log.close()
    assert sorted(pl.read_parquet(list(tmp_path.glob("*.parquet")))["request_id"]) == ["a", "b"]
