"""What a process makes once, on first use and never at import (its Prometheus metrics)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def once(build: Callable[[], T]) -> Callable[[], T]:
    """``build()`` on the first call and its result on every later one; the first call holds a
    lock, so two threads arriving together build once (a Prometheus metric registered twice
    raises)."""
    lock = threading.Lock()
    made: list[T] = []

    @functools.wraps(build)
    def get() -> T:
        with lock:
            if not made:
                made.append(build())
            return made[0]

    return get
