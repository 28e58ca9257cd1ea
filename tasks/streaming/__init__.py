"""Streaming scoring: records from a broker scored in micro-batches, at least once.

``config`` holds the settings, ``brokers`` the one adapter per broker scheme (all FastStream),
``batch`` the pure part (validate, score, dead-letter a batch with the service's contract and
scoring code), ``metrics`` the Prometheus counters and ``consumer`` the asyncio loop that ties
them together (micro-batching, log-then-publish-then-ack, graceful stop).
"""
