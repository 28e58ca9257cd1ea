"""Serving fixtures: a server per module on a home whose champion is tiny model A.

``served`` runs ``driftloop serve`` (bentoml serve) on a free loopback port, in its own process
group, with its own DRIFTLOOP_HOME, and always tears it down.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from driftloop.supervise import free_port
from tasks.settings import Settings
from tests.support.homes import tiny_champion_home
from tests.support.models import TinyModels
from tests.support.server import Server, make_home


@pytest.fixture(scope="module")
def served(tiny_models: TinyModels) -> Iterator[tuple[Server, dict[str, str]]]:
    """A home with champion A (challenger unset) and model B stored; a server on it."""
    champion = tiny_champion_home(Settings(home=make_home("serve")), tiny_models)
    tags = {"a": champion.champion, "b": champion.other}
    server = Server(champion.root, free_port())
    try:
        server.wait_ready()
        yield server, tags
    finally:
        server.stop()
