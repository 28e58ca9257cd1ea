"""The reliability suite: faults, bad input and attackers, each case bounded and cleaned up.

Every case records its figures with :func:`tests.reliability.kit.figures`; they are printed at
the end of the run (and are what docs/reliability.md quotes).
"""

from __future__ import annotations

import pytest

from tests.reliability.kit import FIGURES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES:
        return
    terminalreporter.section("reliability figures")
    for case, numbers in FIGURES:
        terminalreporter.write_line(f"{case}: " + ", ".join(f"{k}={v}" for k, v in numbers.items()))
