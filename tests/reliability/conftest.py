"""The reliability suite: faults, bad input and attackers, each case bounded and cleaned up.

Every case records its figures with :func:`tests.reliability.kit.figures`; they are printed at
the end of the run under "reliability figures" (:mod:`tests.support.figures`, also across
pytest-xdist workers) and are what docs/reliability.md quotes.
"""
