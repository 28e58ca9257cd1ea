"""The alias index on PostgreSQL: row-locked read-modify-write, all or nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tasks.postgres import aliases

REPO = Path(__file__).resolve().parents[2]


def _move(url: str, name: str, alias: str, tag: str) -> None:
    with aliases.locked_entry(url, name) as entry:
        old = entry["aliases"].get(alias)
        entry["aliases"][alias] = tag
        entry["history"].append({"alias": alias, "from": old, "to": tag, "reason": "t"})


def test_concurrent_moves_take_turns_and_lose_nothing(pg_url: str):
    def mover(k: int) -> None:
        for i in range(10):
            _move(pg_url, "toy", "champion", f"toy:{k}-{i}")

    threads = [threading.Thread(target=mover, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    history = aliases.read_index(pg_url)["toy"]["history"]
    assert len(history) == 30
    # each move saw the previous one: the history is one unbroken chain
    assert all(b["from"] == a["to"] for a, b in zip(history, history[1:], strict=False))
    assert aliases.read_index(pg_url)["toy"]["aliases"]["champion"] == history[-1]["to"]


def test_a_failure_inside_the_block_changes_nothing(pg_url: str):
    _move(pg_url, "toy", "champion", "toy:a")
    before = aliases.read_index(pg_url)
    with pytest.raises(RuntimeError, match="checksum"), aliases.locked_entry(pg_url, "toy") as e:
        e["aliases"]["champion"] = "toy:b"
        e["history"].append({"alias": "champion", "from": "toy:a", "to": "toy:b"})
        raise RuntimeError("checksum mismatch")
    with pytest.raises(RuntimeError), aliases.locked_entry(pg_url, "new") as e:
        e["aliases"]["champion"] = "new:a"
        raise RuntimeError("no such model")
    assert aliases.read_index(pg_url) == before  # and no empty entry for "new"


def test_a_killed_writer_leaves_the_old_index_and_releases_the_lock(pg_url: str):
    _move(pg_url, "toy", "champion", "toy:a")
    before = aliases.read_index(pg_url)
    script = textwrap.dedent(
        f"""
        import os, signal
        from tasks.postgres import aliases
        with aliases.locked_entry({pg_url!r}, "toy") as entry:
            entry["aliases"]["champion"] = "toy:b"
            print("locked", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL and "locked" in proc.stdout, proc.stderr
    assert aliases.read_index(pg_url) == before
    started = time.monotonic()
    _move(pg_url, "toy", "champion", "toy:c")  # the dead session's row lock is gone
    assert time.monotonic() - started < 10
    assert aliases.read_index(pg_url)["toy"]["aliases"]["champion"] == "toy:c"


def test_history_only_grows(pg_url: str):
    _move(pg_url, "toy", "champion", "toy:a")
    with pytest.raises(ValueError, match="only grows"), aliases.locked_entry(pg_url, "toy") as e:
        e["history"].clear()
    assert len(aliases.read_index(pg_url)["toy"]["history"]) == 1
