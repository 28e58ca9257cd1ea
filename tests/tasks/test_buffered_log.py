"""The durable log: an entry whose future resolved survives SIGKILL; journals recover once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import polars as pl
import pytest

from tasks import journal as journal_format
from tasks.buffered_log import BufferedLog, read_journal, recover_orphans

REPO = Path(__file__).parents[2]


def _frames(entries: list[list[str]]) -> pl.DataFrame:
    return pl.DataFrame({"request_id": [i for e in entries for i in e]})


@pytest.mark.parametrize("fsync", [False, True], ids=["write", "fsync"])
def test_acknowledged_entries_survive_sigkill(tmp_path: Path, fsync: bool):
    """Every id whose future resolved before the kill is found after recovery (no Parquet yet),
    in both durability modes."""
    script = textwrap.dedent(
        f"""
        import itertools, sys, polars as pl
        from pathlib import Path
        from tasks.buffered_log import BufferedLog
        log = BufferedLog(Path({str(tmp_path)!r}),
                          lambda es: pl.DataFrame({{"request_id": [i for e in es for i in e]}}),
                          prefix="p", flush_seconds=3600, fsync={fsync}).start()
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


def _kill(log: BufferedLog) -> None:
    """As a SIGKILL would: the segment's lock goes with the process, the file stays."""
    log._open.segment.close()
    log._open = None


def test_torn_tail_is_dropped_and_live_segments_are_left_alone(tmp_path: Path):
    log = BufferedLog(tmp_path, _frames, prefix="p", flush_seconds=3600)
    log.append(["a", "b"], 2)
    log.append(["c"], 1)
    (journal,) = tmp_path.glob("*.journal")
    assert recover_orphans(tmp_path) == 0  # this process holds the segment's lock
    with open(journal, "ab") as fh:
        fh.write(b"\x10\x00\x00\x00garbage")  # a record cut short by a kill
    assert [f["request_id"].to_list() for f in read_journal(journal)] == [["a", "b"], ["c"]]
    _kill(log)
    assert recover_orphans(tmp_path) == 3
    assert sorted(pl.read_parquet(list(tmp_path.glob("*.parquet")))["request_id"]) == [
        "a",
        "b",
        "c",
    ]


def test_a_zero_length_record_ends_the_journal(tmp_path: Path):
    """Zeroed space (a preallocated or crashed file's tail) reads as the end, not as records."""
    log = BufferedLog(tmp_path, _frames, prefix="p", flush_seconds=3600)
    log.append(["a"], 1)
    (journal,) = tmp_path.glob("*.journal")
    with open(journal, "ab") as fh:
        fh.write(bytes(64))
    assert [f["request_id"].to_list() for f in read_journal(journal)] == [["a"]]


def test_a_crash_between_parquet_and_journal_delete_writes_nothing_twice(tmp_path: Path):
    log = BufferedLog(tmp_path, _frames, prefix="p", flush_seconds=3600)
    log.append(["a"], 1)
    journal = log._open.segment.path
    saved = journal.read_bytes()
    log.flush()
    assert not journal.exists()
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


def test_write_mode_journals_in_append_and_fsync_mode_fsyncs_each_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(journal_format.os, "fsync", lambda fd: synced.append(fd) or real(fd))
    write = BufferedLog(tmp_path / "w", _frames, prefix="p", flush_seconds=3600).start()
    done = write.append(["a"], 1)
    assert done.done() and done.exception() is None  # resolved before append returned
    assert [f["request_id"].to_list() for f in read_journal(write._open.segment.path)] == [["a"]]
    assert not synced  # the journal never fsyncs in "write" mode (the Parquet file will)
    write.close()
    synced.clear()
    durable = BufferedLog(tmp_path / "f", _frames, prefix="p", flush_seconds=3600, fsync=True)
    durable.start().append(["b"], 1).result(timeout=10)
    assert synced  # the record, and the new segment's directory entry
    assert [f["request_id"].to_list() for f in read_journal(durable._open.segment.path)] == [["b"]]
    durable.close()


class _HeldSink:
    """A sink whose writes wait until released (a slow disk or database)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.entered = threading.Event()
        self.release = threading.Event()
        self.rows: list[str] = []

    def open(self) -> None: ...

    def write(self, frame: pl.DataFrame, segment: str) -> str:
        self.entered.set()
        assert self.release.wait(30)
        self.rows += frame["request_id"].to_list()
        return segment

    def written(self, segment: str) -> bool:
        return False

    def close(self) -> None: ...


@pytest.mark.parametrize("fsync", [False, True], ids=["write", "fsync"])
def test_appends_are_acknowledged_while_a_flush_is_writing(tmp_path: Path, fsync: bool):
    """A slow sink write holds no request: appends go on into a new journal segment."""
    sink = _HeldSink(tmp_path)
    log = BufferedLog(tmp_path, _frames, prefix="p", sink=sink, flush_seconds=3600, fsync=fsync)
    log.start().append(["a"], 1).result(timeout=10)
    flushing = threading.Thread(target=log.flush)
    flushing.start()
    try:
        assert sink.entered.wait(10)
        log.append(["b"], 1).result(timeout=10)  # while the flush is still in the sink
        assert flushing.is_alive() and len(list(tmp_path.glob("*.journal"))) == 2
    finally:
        sink.release.set()
        flushing.join(10)
    log.close()
    assert sink.rows == ["a", "b"] and not list(tmp_path.glob("*.journal"))


def test_a_journal_of_unknown_records_is_kept_not_dropped(tmp_path: Path):
    """Records of a codec nobody passed raise; the journal stays for a reader that can."""
    segment = journal_format.Segment(tmp_path / "p~dead-000001.journal", sync=False)
    segment.append([b"DLB1not-a-frame"])
    segment.close()
    with pytest.raises(ValueError, match="decoder"):
        recover_orphans(tmp_path)
    assert (tmp_path / "p~dead-000001.journal").exists()
