"""Shared test support: Telco frames, tiny models, homes with a champion, a real server.

Builders are plain functions (``telco``, ``models``, ``homes``, ``server``); the pytest fixtures
built on them live in :mod:`tests.support.fixtures`, registered by ``tests/conftest.py``.
"""
