"""The replay benchmark of decisions (issue #14): scenarios built with ``tasks.simulate`` on
held-out rows, many seeded runs each through the real monitor code, and what a good monitor
should have done.

- ``champion``: train and register the champion, keep the pool of held-out rows;
- ``run``: one seeded replay of a scenario (prediction log with delayed labels, no HTTP);
- ``summary``: per scenario rates, delays, estimate quality and the acceptance targets.
"""
