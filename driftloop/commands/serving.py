"""``driftloop serve`` / ``score`` / ``build``: the online service, batch scoring, the bento."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import typer

from driftloop.output import CLIError, emit, errors_as_exit

REPO = Path(__file__).resolve().parents[2]
SERVICE = "bentos.service:Driftloop"
BENTOFILE = REPO / "bentos" / "bentofile.yaml"


def serve_command(
    port: int, dataset: str, host: str = "127.0.0.1", workers: int = 1
) -> tuple[list[str], dict[str, str]]:
    """The ``bentoml serve`` command line and environment for this home and dataset."""
    from tasks.settings import get_settings

    settings = get_settings().ensure_dirs()
    env = {
        **os.environ,
        **settings.library_env(),
        "DRIFTLOOP_DATASET": dataset,
        "DRIFTLOOP_SERVE_WORKERS": str(workers),
        "BENTOML_DO_NOT_TRACK": "True",
    }
    cmd = [sys.executable, "-m", "bentoml", "serve", SERVICE, "--host", host, "--port", str(port)]
    return [*cmd, "--working-dir", str(REPO)], env


def serve(
    port: int = typer.Option(3000, "--port", help="Port to listen on."),
    dataset: str = typer.Option("telco", "--dataset", help="Dataset (schemas/<name>.py)."),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Interface to bind. Loopback unless you mean otherwise."
    ),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes."),
) -> None:
    """Start the prediction service (bentoml serve) for the dataset's champion model."""
    from schemas import load_dataset

    with errors_as_exit(False):
        load_dataset(dataset)  # a bad name fails here, with the list of known datasets
        cmd, env = serve_command(port, dataset, host, workers)
    typer.echo(f"serving {dataset} on http://{host}:{port} (Ctrl-C stops)", err=True)
    os.execvpe(cmd[0], cmd, env)  # signals reach bentoml directly: a clean stop flushes logs


def score(
    path: Path = typer.Argument(..., help="CSV or Parquet file of records to score."),
    out: Path = typer.Option(..., "--out", help="Where to write scores (.parquet or .csv)."),
    dataset: str = typer.Option("telco", "--dataset", help="Dataset (schemas/<name>.py)."),
    model: str = typer.Option("champion", "--model", help="Alias (champion|challenger) or tag."),
    shadow: bool = typer.Option(False, "--shadow", help="Also score with the challenger."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Score a file with the same validation, features and model code as the service."""
    from tasks.scoring import score_file

    with errors_as_exit(as_json):
        result = score_file(path, out, dataset=dataset, model=model, shadow=shadow)
    emit(result.to_dict(), as_json)


def build(
    dataset: str = typer.Option("telco", "--dataset", help="Dataset (schemas/<name>.py)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Build a bento (service, schemas, feature code and the champion model), offline."""
    with errors_as_exit(as_json):
        emit(build_bento(dataset), as_json)


def build_bento(dataset: str) -> dict:
    from schemas import load_dataset
    from tasks import registry
    from tasks.settings import get_settings

    load_dataset(dataset)
    settings = get_settings()
    champion = registry.get_alias(dataset, registry.CHAMPION, settings)
    if champion is None:
        raise CLIError(f"no {dataset} champion to pack: train and promote a model first")
    _, env = serve_command(0, dataset)
    cmd = [sys.executable, "-m", "bentoml", "build", "-f", str(BENTOFILE), str(REPO)]
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    found = re.search(r'tag="([^"]+)"', done.stdout + done.stderr)
    if done.returncode != 0 or not found:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise CLIError("bentoml build failed: " + " | ".join(tail))
    tag = found.group(1)
    name, _, version = tag.partition(":")
    # BentoML 1.4 keeps models in its store and copies them into the bento on export:
    # the archive is the self-contained artefact (service, schemas, feature code, model).
    archive = settings.bento_exports_dir / f"{name}-{version}.bento"
    archive.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "bentoml", "export", tag, str(archive)]
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not archive.exists():
        raise CLIError("bentoml export failed: " + (done.stderr or done.stdout)[-500:])
    return {
        "bento": tag,
        "model": champion,
        "path": settings.bentoml_home / "bentos" / name / version,
        "archive": archive,
    }


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("score")(score)
    app.command("build")(build)
