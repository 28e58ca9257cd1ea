"""driftloop's benchmarks: every speed and memory claim, one command away.

``python -m bench.run`` runs each ``bench/bench_<area>.py`` in its own subprocess and writes
``BENCHMARKS.md`` plus ``bench/results/results.json``; ``--quick`` is the seconds-long smoke
run (results under ``bench/results/smoke/``). Shared helpers live in :mod:`bench.harness`.
"""
