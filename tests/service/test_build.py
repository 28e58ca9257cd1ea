"""`driftloop build` packs service, schemas, feature code and the champion, with no network."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from tasks import registry
from tests.support.homes import ChampionHome
from tests.support.telco import REPO

pytestmark = pytest.mark.slow

# Any attempt to reach a package index or the internet fails fast through these.
OFFLINE = {
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
    "UV_INDEX_URL": "http://127.0.0.1:9/simple",
    "PIP_NO_INDEX": "1",
}


def test_bentoml_build_succeeds_offline(champion_home: ChampionHome):
    settings, tag = champion_home.settings, champion_home.champion
    env = {**os.environ, "DRIFTLOOP_HOME": str(settings.root), **OFFLINE}
    done = subprocess.run(
        ["uv", "run", "--frozen", "--offline", "driftloop", "build", "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["model"] == tag
    bento = Path(result["path"])
    assert bento.is_dir() and str(bento).startswith(str(settings.root))
    for rel in (
        "bentos/service.py",
        "schemas/telco.py",
        "schemas/requests.py",
        "tasks/features.py",
    ):
        assert (bento / "src" / rel).is_file(), rel
    manifest = (bento / "bento.yaml").read_text()
    assert tag in manifest
    with tarfile.open(result["archive"]) as archive:  # the self-contained artefact
        names = set(archive.getnames())
    name, version = tag.split(":")
    assert any(n.endswith(f"models/{name}/{version}/{registry.MODEL_FILE}") for n in names)
    assert any(n.endswith("src/bentos/service.py") for n in names)
