"""The monitor's stage: the window (``window``), its checks (``checks``), the service's own
counters (``serving``), the state between runs (``state``), the decision and its events
(``decision``) and the report (``report``). Drift statistics live in ``tasks.drift``; whylogs in
``tasks.profiling``."""
