"""Serving fixtures: tiny Telco boosters trained once per session, a server per module.

``served`` runs ``driftloop serve`` (bentoml serve) on a free loopback port, in its own process
group, with its own DRIFTLOOP_HOME, and always tears it down.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import servekit
from servekit import Server, TinyModels, free_port, make_home, save

from tasks import registry
from tasks.settings import Settings


@pytest.fixture(scope="session")
def tiny_models() -> TinyModels:
    return servekit.tiny_models()


@pytest.fixture(scope="module")
def served(tiny_models: TinyModels) -> Iterator[tuple[Server, dict[str, str]]]:
    """A home with champion A (challenger unset) and model B stored; a server on it."""
    home = make_home("serve")
    settings = Settings(home=home)
    settings.ensure_dirs()
    tags = {
        "a": save(tiny_models.a, tiny_models.features, settings, "a"),
        "b": save(tiny_models.b, tiny_models.features, settings, "b"),
    }
    registry.set_alias("telco", registry.CHAMPION, tags["a"], settings=settings)
    server = Server(home, free_port())
    try:
        server.wait_ready()
        yield server, tags
    finally:
        server.stop()
