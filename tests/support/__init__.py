"""Shared test support: Telco frames, tiny models, homes with a champion, a real server, a
webhook receiver, artifacts read back from the Prefect API, a headless browser.

Builders are plain functions (``telco``, ``models``, ``homes``, ``server``); the pytest fixtures
built on them live in :mod:`tests.support.fixtures`, registered by ``tests/conftest.py``.
"""
