"""A daemon thread that does one step every few seconds until stopped (the alias watcher and the
process metrics of every worker run on it); a failing step is logged and tried again."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable


class Every:
    """Call ``step`` every ``seconds`` on a daemon thread named ``name`` until :meth:`stop`."""

    def __init__(self, seconds: float, step: Callable[[], object], name: str, failed: str) -> None:
        self.seconds, self._step, self._name, self._failed = seconds, step, name, failed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Every:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.seconds):
            try:
                self._step()
            except Exception:
                logging.getLogger("driftloop.serving").exception(self._failed)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
