"""The reliability cases' figures, printed at the end of the run (a pytest plugin).

A case records them with :func:`tests.reliability.kit.figures` in the process that runs it.
Under pytest-xdist that is a worker, and the summary is printed by the controller: each test
report carries its case's figures across (``user_properties``, which xdist sends with the
report), and the controller prints what the reports brought.
"""

from __future__ import annotations

import pytest

KEY = "reliability_figures"
FIGURES: list[tuple[str, dict]] = []  # recorded in this process, not yet on a report
_SEEN: list[str] = []  # the controller's (or a serial run's) figures, in report order


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    while FIGURES:  # recorded during this phase of this test
        case, numbers = FIGURES.pop(0)
        line = f"{case}: " + ", ".join(f"{k}={v}" for k, v in numbers.items())
        report.user_properties.append((KEY, line))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _SEEN.extend(line for key, line in report.user_properties if key == KEY)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _SEEN:
        terminalreporter.section("reliability figures")
        for line in _SEEN:
            terminalreporter.write_line(line)
