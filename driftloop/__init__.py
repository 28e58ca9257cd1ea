"""driftloop's application shell: the CLI, the local stack runner and the demo.

It calls flows and tasks; nothing in flows/, tasks/, schemas/ or bentos/ imports it.
"""

__version__ = "0.1.0"
