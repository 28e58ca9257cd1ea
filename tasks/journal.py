"""The journal's file format: checksummed records appended to segment files.

A record is ``<u32 length><u32 crc32 of the payload>`` and the payload. A reader keeps the
records up to the first one that is cut short, fails its checksum or has length 0 (records are
never empty; zeroed space reads as that), so a torn tail (a write a kill interrupted, never
acknowledged) is dropped and never spoils the records before it. A payload is either an Arrow
IPC stream (a frame: the generic records, and every record written before issue #11) or a
record of the log's own codec, told apart by the IPC stream's leading continuation marker.

A live writer holds an ``flock`` on its segment, so a reader can tell a dead writer's segment
(recover it) from a live one (leave it).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import polars as pl

SUFFIX = ".journal"
_HEADER = struct.Struct("<II")  # payload length, crc32 of the payload
_IPC_MARK = b"\xff\xff\xff\xff"  # every Arrow IPC stream message starts with it

Decode = Callable[[list[bytes]], pl.DataFrame]  # a codec's records (not IPC) as rows


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ipc(frame: pl.DataFrame) -> bytes:
    """``frame`` as an uncompressed Arrow IPC stream (a self-describing journal payload)."""
    buf = io.BytesIO()
    frame.write_ipc_stream(buf, compression="uncompressed")
    return buf.getvalue()


def read_records(path: Path) -> list[bytes]:
    """The payloads of a segment's whole records, in order (a torn or corrupt tail dropped)."""
    data, out, at = path.read_bytes(), [], 0
    while at + _HEADER.size <= len(data):
        size, crc = _HEADER.unpack_from(data, at)
        payload = data[at + _HEADER.size : at + _HEADER.size + size]
        if size == 0 or len(payload) != size or zlib.crc32(payload) != crc:
            break
        out.append(payload)
        at += _HEADER.size + size
    return out


def records_frame(payloads: list[bytes], decode: Decode | None = None) -> pl.DataFrame | None:
    """The rows of a segment's records (None if it has none): IPC payloads are read as they
    are, the others by ``decode`` (a record of a codec nobody passed is an error, so a
    recovery never drops a journal it cannot read)."""
    frames = [pl.read_ipc_stream(io.BytesIO(p)) for p in payloads if p[:4] == _IPC_MARK]
    other = [p for p in payloads if p[:4] != _IPC_MARK]
    if other:
        if decode is None:
            raise ValueError(f"{len(other)} journal records need their log's decoder")
        frames.append(decode(other))
    return pl.concat(frames, how="diagonal_relaxed") if frames else None


class Segment:
    """A journal file this process appends to, under an ``flock`` held until it is closed.

    ``sync``: each append is fsynced (and the new file's directory entry once), so its
    records survive a power cut; without it an append is in the OS once ``write`` returns,
    which a kill of this process cannot undo.
    """

    def __init__(self, path: Path, *, sync: bool) -> None:
        self.path = path
        self.sync = sync
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self.size = os.fstat(self._fd).st_size
        self.broken = False  # a failed append could not be undone: write no more here
        if sync:
            fsync_dir(path.parent)

    def append(self, payloads: list[bytes]) -> None:
        """Append the records whole, or raise having left none of them behind."""
        data = b"".join(_HEADER.pack(len(p), zlib.crc32(p)) + p for p in payloads)
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
            if self.sync:
                os.fsync(self._fd)
        except BaseException:
            try:  # no torn record ahead of the next one
                os.ftruncate(self._fd, self.size)
            except OSError:
                self.broken = True
            raise
        self.size += len(data)

    def close(self) -> None:
        """Release the file and its lock (the file stays: a recovery may take it now)."""
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def drop(self) -> None:
        """Delete the file: its rows are in the sink (if that fails, a recovery finds the batch
        written already and deletes it then)."""
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        self.close()
