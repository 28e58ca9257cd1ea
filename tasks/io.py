"""Small, dependency-free I/O helpers every module may import (nothing heavy behind them).

- :func:`atomic_write` — temp file, fsync, rename, fsync the directory: a crash or a full disk
  leaves the old file or the new one, never half of one.
- :func:`locked` — an exclusive ``flock`` held for a read-modify-write.
- :func:`to_jsonable` / :func:`dumps` — the one conversion of our values to JSON.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO


def atomic_write(path: Path, data: bytes | Callable[[BinaryIO], Any]) -> None:
    """Write ``data`` (bytes, or a function writing to an open binary file) to ``path``
    atomically: temp file, fsync, rename, fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w+b") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``lock_path`` (created if missing) for the block."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def to_jsonable(obj: Any) -> Any:
    """``json.dumps`` ``default=``: paths, sets, datetimes, pydantic models, dataclasses,
    named tuples and NumPy values become plain JSON types."""
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if hasattr(obj, "_asdict"):
        return obj._asdict()
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(obj)
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    raise TypeError(f"value of type {type(obj).__name__} is not JSON serialisable")


def dumps(
    obj: Any, *, indent: int | None = None, sort_keys: bool = False, allow_nan: bool = False
) -> str:
    """JSON text of ``obj`` through :func:`to_jsonable`; NaN/inf refused unless allowed."""
    return json.dumps(
        obj, default=to_jsonable, indent=indent, sort_keys=sort_keys, allow_nan=allow_nan
    )


def write_json(path: Path, obj: Any, *, sort_keys: bool = False) -> None:
    """``obj`` as indented JSON at ``path``, atomically."""
    atomic_write(path, dumps(obj, indent=2, sort_keys=sort_keys).encode())


# --- a full disk ---------------------------------------------------------------------------

_DISK_FULL_TEXT = ("database or disk is full", "no space left on device", "disk quota exceeded")


class DiskFullError(OSError):
    """The disk holding the state directory has no room for what a command must write."""


def disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc``, or anything in its cause/context chain, is a full disk (ENOSPC, EDQUOT,
    SQLite's "database or disk is full")."""
    import errno

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFullError) or (
            isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
        ):
            return True
        if any(text in str(exc).lower() for text in _DISK_FULL_TEXT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def free_bytes(path: Path) -> int:
    """Bytes free on the file system holding ``path`` (its nearest existing parent)."""
    import shutil

    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def require_free_space(path: Path, min_bytes: int) -> None:
    """Raise :class:`DiskFullError` before any write when ``path``'s disk is (nearly) full."""
    free = free_bytes(path)
    if free < min_bytes:
        raise DiskFullError(
            f"the disk holding {path} is full ({free // 2**20} MiB free, at least "
            f"{min_bytes // 2**20} MiB needed)"
        )
