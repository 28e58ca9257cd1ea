"""``driftloop info``: where state lives and which servers are configured."""

from __future__ import annotations

import typer

from driftloop.output import emit


def info(as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Show the state directory layout, the configured servers and the known datasets."""
    from driftloop import __version__
    from schemas import available_datasets
    from tasks.settings import get_settings
    from tasks.training.storage import redact

    s = get_settings()
    result = {
        "version": __version__,
        "home": s.root,
        "snapshots": s.snapshots_dir,
        "models_index": s.alias_index,
        "bentoml_home": s.bentoml_home,
        "prefect_home": s.prefect_home,
        "wandb_dir": s.wandb_dir,
        "optuna_storage": s.optuna_url,
        "database": redact(s.database_url),  # shared logs and aliases; None: files
        "prefect_api_url": s.prefect_api_url,
        "datasets": available_datasets(),
    }
    emit(result, as_json)


def register(app: typer.Typer) -> None:
    app.command("info")(info)
