"""`driftloop build` packs service, schemas, feature code and the champion, with no network."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from servekit import REPO, save

from tasks import registry
from tasks.settings import Settings

pytestmark = pytest.mark.slow

# Any attempt to reach a package index or the internet fails fast through these.
OFFLINE = {
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
    "UV_INDEX_URL": "http://127.0.0.1:9/simple",
    "PIP_NO_INDEX": "1",
}


def test_bentoml_build_succeeds_offline(tmp_path: Path, tiny_models):
    settings = Settings(home=tmp_path / "home")
    settings.ensure_dirs()
    tag = save(tiny_models.a, tiny_models.features, settings, "a")
    registry.set_alias("telco", registry.CHAMPION, tag, settings=settings)
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
