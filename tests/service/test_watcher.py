"""The per-worker model watcher: swaps when an alias moves, refuses a corrupted candidate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bentos.runtime import ModelWatcher, probe_model
from tasks import registry
from tasks.io import atomic_write
from tasks.settings import Settings
from tests.support.homes import ChampionHome


class _Counter:
    def __init__(self) -> None:
        self.counts: dict[tuple, float] = {}

    def labels(self, **labels: str) -> _Counter:
        self._key = tuple(sorted(labels.items()))
        return self

    def inc(self, n: float = 1) -> None:
        self.counts[self._key] = self.counts.get(self._key, 0) + n


class _Metrics:
    def __init__(self) -> None:
        self.swaps = _Counter()


def _point_alias(settings: Settings, alias: str, tag: str) -> None:
    """Move an alias without the registry's own checks (a file corrupted after promotion)."""
    index = registry.read_index(settings)
    index["telco"]["aliases"][alias] = tag
    atomic_write(settings.alias_index, json.dumps(index).encode())


def test_watcher_follows_aliases_and_keeps_old_model_on_corruption(champion_home: ChampionHome):
    settings, a, b = champion_home.settings, champion_home.champion, champion_home.other
    metrics = _Metrics()
    watcher = ModelWatcher("telco", settings, metrics)  # type: ignore[arg-type]
    assert watcher.check().champion.tag == a
    assert watcher.check() is watcher.models  # index unchanged: nothing reloaded

    registry.set_alias("telco", registry.CHALLENGER, b, settings=settings)
    models = watcher.check()
    assert (models.champion.tag, models.challenger.tag) == (a, b)

    # B's model file is damaged after it became challenger; then B is made champion
    model_file = registry.model_path(b, settings) / registry.MODEL_FILE
    text = model_file.read_text()
    model_file.write_text(text.replace("num_leaves=15", "num_leaves=16", 1))
    _point_alias(settings, registry.CHAMPION, b)
    models = watcher.check()
    assert models.champion.tag == a  # the old champion keeps serving
    assert metrics.swaps.counts[(("alias", "champion"), ("outcome", "failed"))] == 1
    assert watcher.check(force=True).champion.tag == a  # a known-bad tag is not retried


def test_probe_catches_a_truncated_model_that_would_crash_the_process(
    champion_home: ChampionHome, tmp_path: Path
):
    settings, a = champion_home.settings, champion_home.champion
    path = registry.model_path(a, settings)
    probe_model(path)  # intact: passes
    model_file = path / registry.MODEL_FILE
    data = model_file.read_bytes()
    model_file.write_bytes(data[: len(data) // 3])
    with pytest.raises(registry.CorruptModelError):
        probe_model(path)


def test_promoting_the_loaded_challenger_swaps_without_loading_it_again(
    champion_home: ChampionHome,
):
    settings, a, b = champion_home.settings, champion_home.champion, champion_home.other
    loads: list[str] = []

    def loader(tag: str, s: Settings):
        loads.append(tag)
        return registry.load_model(tag, s)

    watcher = ModelWatcher("telco", settings, _Metrics(), loader=loader)  # type: ignore[arg-type]
    watcher.check()
    first_since = watcher.since["champion"]
    registry.set_alias("telco", registry.CHALLENGER, b, settings=settings)
    shadow = watcher.check().challenger
    assert loads == [a, b] and watcher.since["challenger"] >= first_since

    registry.promote("telco", b, settings=settings)
    models = watcher.check()
    assert models.champion is shadow  # the very object that was shadow-scoring
    assert loads == [a, b]  # no second probe and load
    assert watcher.since["champion"] > first_since
