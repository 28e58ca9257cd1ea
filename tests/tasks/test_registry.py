"""Registry: store round trip, checksums, aliases, rollback, and crash safety of the index."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tasks import io as tio
from tasks import registry
from tasks.features import FeatureSpec
from tasks.io import atomic_write
from tasks.settings import Settings, get_settings
from tasks.training import register
from tests.support.models import TOY_FEATURES as FEATURES
from tests.support.models import toy_booster

REPO = Path(__file__).resolve().parents[2]


def _save(seed: int) -> str:
    return registry.save_model(
        toy_booster(seed), name="toy", features=FEATURES, metadata={"seed": seed, "threshold": 0.4},
        card="# card for {{MODEL_TAG}}",
    )  # fmt: skip


X_CHECK = np.random.default_rng(9).normal(size=(20, 2))


@pytest.fixture(params=["file", "postgresql"])
def index(request, home, monkeypatch) -> str:
    """Run an alias-index test on both backends: models/index.json, and PostgreSQL."""
    if request.param == "postgresql":
        monkeypatch.setenv("DRIFTLOOP_DATABASE_URL", request.getfixturevalue("pg_url"))
    return request.param


def test_save_load_round_trip(home) -> None:
    booster = toy_booster(1)
    tag = registry.save_model(
        booster, name="toy", features=FEATURES, metadata={"threshold": 0.3, "nested": {"x": None}},
        labels={"dataset": "toy"}, card="# {{MODEL_TAG}}",
    )  # fmt: skip
    loaded = registry.load_model(tag)
    assert np.array_equal(loaded.predict(X_CHECK), booster.predict(X_CHECK))
    assert loaded.threshold == 0.3 and loaded.features == FEATURES
    assert (loaded.path / registry.CARD_FILE).read_text() == f"# {tag}"


def test_corrupt_model_is_refused(home, index) -> None:
    tag = _save(1)
    path = registry.model_path(tag)
    text = (path / registry.MODEL_FILE).read_text()
    (path / registry.MODEL_FILE).write_text(text.replace("Tree=0", "Tree=1", 1))
    with pytest.raises(registry.CorruptModelError):
        registry.load_model(tag)
    with pytest.raises(registry.CorruptModelError):
        registry.promote("toy", tag)
    assert registry.get_alias("toy", registry.CHAMPION) is None


def test_rollback_walks_back_through_champions(home, index) -> None:
    a, b, c = _save(1), _save(2), _save(3)
    for tag in (a, b, c):
        registry.promote("toy", tag)
    assert registry.rollback("toy") == b
    assert registry.get_alias("toy", registry.CHAMPION) == b
    assert registry.rollback("toy") == a  # not back to c: champions form a stack
    with pytest.raises(registry.RegistryError, match="no earlier champion"):
        registry.rollback("toy")
    assert registry.load_model("toy:champion").tag == a
    reasons = [m["reason"] for m in registry.read_index()["toy"]["history"]]
    assert reasons.count("rollback") == 2


def test_rollback_restores_previous_champion_after_a_challenger_is_promoted(home, index) -> None:
    a, b = _save(1), _save(2)
    r = register.register_model(
        toy_booster(1),
        name="toy",
        features=FEATURES,
        metadata={},
        labels={},
        card="",
        alias="auto",
    )
    assert r.alias == registry.CHAMPION
    registry.set_alias("toy", registry.CHALLENGER, b)
    assert register.choose_alias("toy", "auto") == registry.CHALLENGER
    registry.promote("toy")  # the challenger
    assert registry.get_alias("toy", registry.CHALLENGER) is None
    assert registry.rollback("toy") == r.tag
    assert registry.load_model("toy:champion").tag == r.tag
    assert a not in registry.read_index()["toy"]["champions"]


def test_rollback_works_on_an_index_written_before_the_champion_stack(home) -> None:
    a, b = _save(1), _save(2)
    registry.promote("toy", a)
    registry.promote("toy", b)
    index = registry.read_index()
    del index["toy"]["champions"]
    atomic_write(get_settings().alias_index, json.dumps(index).encode())
    assert registry.rollback("toy") == a


def test_failed_index_write_leaves_the_old_index_whole(home, monkeypatch) -> None:
    a, b = _save(1), _save(2)
    registry.promote("toy", a)
    before = get_settings().alias_index.read_bytes()

    real_fdopen = os.fdopen

    class DiskFull:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):  # half the bytes reach the temp file, then the disk is full
            self.fh.write(data[: len(data) // 2])
            raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch, pytest.raises(OSError, match="No space"):
        patch.setattr(tio.os, "fdopen", lambda fd, mode: DiskFull(real_fdopen(fd, mode)))
        registry.promote("toy", b)
    index_path = get_settings().alias_index
    assert index_path.read_bytes() == before
    assert not [p for p in index_path.parent.iterdir() if p.name.endswith(".tmp")]
    assert registry.load_model("toy:champion").tag == a


def test_failed_index_transaction_leaves_the_old_index_whole(home, pg_url, monkeypatch) -> None:
    from tasks.postgres import aliases

    monkeypatch.setenv("DRIFTLOOP_DATABASE_URL", pg_url)
    a, b = _save(1), _save(2)
    registry.promote("toy", a)
    registry.set_alias("toy", registry.CHALLENGER, b)
    before = registry.read_index()
    real_save = aliases._save

    def lost(cur, name, entry, history_before):  # every row written, then the link drops
        real_save(cur, name, entry, history_before)
        raise OSError("server closed the connection unexpectedly")

    with monkeypatch.context() as patch, pytest.raises(OSError, match="closed the connection"):
        patch.setattr(aliases, "_save", lost)
        registry.promote("toy")
    assert registry.read_index() == before
    assert registry.load_model("toy:champion").tag == a
    assert registry.promote("toy") == b  # and the next try goes through


CRASH_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {repo!r})
    import lightgbm as lgb
    import numpy as np
    from tasks.features import FeatureSpec
    from tasks.training import register

    X = np.random.default_rng(2).normal(size=(200, 2))
    booster = lgb.train({{"objective": "binary", "verbosity": -1, "num_threads": 1}},
                        lgb.Dataset(X, (X[:, 0] > 0).astype(float)), num_boost_round=3)

    def die(*args, **kwargs):  # the model is fully saved; the alias update never happens
        print("saved", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    register.promote = die
    register.register_model(
        booster, name="toy", features=FeatureSpec(("a", "b"), {{}}), metadata={{}}, labels={{}},
        card="",
        alias="champion",
    )
    """
)


def test_kill_between_save_and_index_update_keeps_a_loadable_champion(home, index) -> None:
    a = _save(1)
    registry.promote("toy", a)
    expected = registry.load_model(a).predict(X_CHECK)
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT.format(repo=str(REPO))],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "DRIFTLOOP_HOME": str(home)},
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "saved" in proc.stdout
    tags = [m["tag"] for m in registry.list_models("toy")]
    assert len(tags) == 2  # the killed run's model is in the store ...
    champion = registry.load_model("toy:champion")  # ... but the index still names a
    assert champion.tag == a
    assert np.array_equal(champion.predict(X_CHECK), expected)
    assert registry.read_index()["toy"]["aliases"] == {"champion": a}  # whole and readable


def test_prior_model_warm_params_and_init_model_checks(home) -> None:
    none_yet = register.prior_model(
        "toy", warm_start=True, init_model=None, features=FEATURES, default_params={"d": 1}
    )
    assert none_yet.champion is None and none_yet.warm_params == [{"d": 1}]
    tag = registry.save_model(
        toy_booster(1), name="toy", features=FEATURES, metadata={"params": {"num_leaves": 7}}
    )
    registry.promote("toy", tag)
    prior = register.prior_model(
        "toy", warm_start=True, init_model="toy:champion", features=FEATURES,
        default_params={"d": 1},
    )  # fmt: skip
    assert prior.warm_params == [{"num_leaves": 7}, {"d": 1}]  # champion first, then defaults
    assert prior.init_tag == tag and prior.init_booster is not None
    cold = register.prior_model("toy", warm_start=False, init_model=None, features=FEATURES)
    assert cold.warm_params == []
    with pytest.raises(registry.RegistryError, match="other features"):
        register.prior_model(
            "toy", warm_start=True, init_model=tag, features=FeatureSpec(("x",), {})
        )


def test_bentoml_private_model_store_keeps_models_where_settings_say(home, tmp_path) -> None:
    """``registry._store`` builds ``bentoml._internal.models.model.ModelStore`` and passes it as
    ``_model_store=`` (private in BentoML 1.4): models must land under Settings.bentoml_home,
    not in BentoML's process-wide store, and come back through ``get`` and ``list``."""
    from bentoml._internal.models.model import ModelStore

    elsewhere = Settings(home=tmp_path / "elsewhere")
    tag = registry.save_model(toy_booster(1), name="toy", features=FEATURES, metadata={},
                              settings=elsewhere)  # fmt: skip
    store = registry._store(elsewhere)
    assert isinstance(store, ModelStore)
    stored = store.get(tag)
    assert Path(stored.path).is_relative_to(elsewhere.bentoml_home / "models")
    assert [str(m.tag) for m in store.list("toy")] == [tag]
    assert registry.list_models("toy", elsewhere)[0]["tag"] == tag
    assert not list(get_settings().bentoml_home.glob("**/model.txt"))  # not the default store
