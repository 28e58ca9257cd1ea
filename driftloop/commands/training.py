"""``driftloop train`` and ``driftloop models list|show|promote|rollback``."""

from __future__ import annotations

from typing import Any

import typer

from driftloop.commands.options import JSON
from driftloop.output import emit, errors_as_exit

models_app = typer.Typer(
    help="The model registry: list, show, promote, roll back.", no_args_is_help=True
)  # noqa: E501


# The options default to None, "not given": TrainConfig's defaults apply, stated there only.
# Reading them here would import flows.train, and Prefect with it, on every CLI start (16 s on
# a loaded 2-core machine) and before `train` sets Prefect's start-up timeout, which Prefect
# reads once, at import.
DEFAULT = "TrainConfig's default"


def train(
    dataset: str = typer.Option(
        None, "--dataset", "-d", help="Schema module name.", show_default=DEFAULT
    ),
    data: str = typer.Option(None, "--data", help="CSV/Parquet file (default: the dataset's)."),
    trials: int = typer.Option(
        None, "--trials", min=1, help="Optuna trial budget.", show_default=DEFAULT
    ),
    timeout: float = typer.Option(
        None, "--timeout", min=1, help="Tuning wall-time budget, s.", show_default=DEFAULT
    ),
    seed: int = typer.Option(
        None, "--seed", help="Seed for splits, sampler and LightGBM.", show_default=DEFAULT
    ),
    threads: int = typer.Option(
        None, "--threads", min=1, help="LightGBM threads per fit.", show_default=DEFAULT
    ),
    alias: str = typer.Option(
        None,
        "--alias",
        help="auto (champion if none yet, else challenger) | champion | challenger.",
        show_default=DEFAULT,
    ),
    warm_start: bool = typer.Option(
        None,
        "--warm-start/--no-warm-start",
        help="Enqueue the champion's params first.",
        show_default=DEFAULT,
    ),
    init_model: str = typer.Option(None, "--init-model", help="Continue from this model's trees."),
    min_rows: int = typer.Option(
        None, "--min-rows", min=1, help="Refuse smaller training data.", show_default=DEFAULT
    ),
    study_name: str = typer.Option(None, "--study-name", help="Optuna study (default: fresh)."),
    value_retained: float = typer.Option(
        None, "--value-retained", help="Binary: worth of a correctly flagged row, once saved."
    ),
    offer_cost: float = typer.Option(
        None, "--offer-cost", help="Binary: cost of acting on one flagged row."
    ),
    offer_success_rate: float = typer.Option(
        None,
        "--offer-success-rate",
        min=0,
        max=1,
        help="Binary: share of correctly flagged rows the action saves. Without the three "
        "value options (here or in the dataset's extras) the threshold is F1-optimal.",
    ),  # fmt: skip
    as_json: bool = JSON,
) -> None:
    """Tune, train, evaluate and register a model; the first one becomes champion."""
    with errors_as_exit(as_json, writes=True):
        import os

        from tasks.settings import get_settings

        get_settings().ensure_dirs().apply_env()
        # Without PREFECT_API_URL the flow starts an ephemeral server; its 20 s default start-up
        # timeout is not enough on a loaded 2-core machine (seen here). Set before prefect loads.
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
        from flows.train import TrainConfig
        from flows.train import train as train_flow

        given = dict(
            dataset=dataset, data=data, trials=trials, timeout_s=timeout, seed=seed,
            num_threads=threads, alias=alias, warm_start=warm_start, init_model=init_model,
            min_rows=min_rows, study_name=study_name, value_retained=value_retained,
            offer_cost=offer_cost, offer_success_rate=offer_success_rate,
        )  # fmt: skip
        config = TrainConfig(**{k: v for k, v in given.items() if v is not None})
        emit(train_flow(config=config), as_json, _render_train)


def _render_train(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    m, b = result["metrics"], result["baseline_metrics"]
    table = Table(title=f"{result['model_tag']} ({result['alias']})", show_header=False)
    table.add_row("data version", result["data_version"])
    for key in ("roc_auc", "roc_auc_ovr_macro", "log_loss", "pr_auc", "f1", "r2", "mae"):
        if m.get(key) is not None:
            table.add_row(key, f"{m[key]:.4f} (untuned: {b.get(key) or float('nan'):.4f})")
    if result.get("threshold") is not None:
        rule = (result.get("business") or {}).get("threshold_rule", "")
        table.add_row("threshold", f"{result['threshold']:.4f} ({rule})")
    if result.get("expected_value_per_month") is not None:
        table.add_row("expected value / month", f"{result['expected_value_per_month']:,.0f}")
    table.add_row("W&B run", str(result["wandb_run_dir"]))
    Console().print(table)


@models_app.command("list")
def list_cmd(
    name: str = typer.Option(None, "--dataset", "-d", help="Only this model name."),
    as_json: bool = JSON,
) -> None:
    """Stored models, newest first, with their aliases and headline metrics."""
    with errors_as_exit(as_json):
        from tasks.registry import list_models

        rows = list_models(name)
        emit({"models": rows}, as_json, _render_list)


def _render_list(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("tag", "aliases", "created", "data version", "roc_auc / r2")
    for row in result["models"]:
        score = row["metrics"].get("roc_auc", row["metrics"].get("r2"))
        table.add_row(
            row["tag"], ",".join(row["aliases"]), row["created"][:19], str(row["data_version"]),
            "" if score is None else f"{score:.4f}",
        )  # fmt: skip
    Console().print(table)


@models_app.command("show")
def show(
    ref: str = typer.Argument(..., help="A tag (name:version) or name:champion|challenger."),
    card: bool = typer.Option(False, "--card", help="Print the model card (Markdown)."),
    as_json: bool = JSON,
) -> None:
    """One model's metadata, aliases and model card path."""
    with errors_as_exit(as_json):
        from tasks.registry import CARD_FILE, model_metadata, model_path, read_index, resolve

        tag = resolve(ref)
        path = model_path(tag)
        aliases = read_index().get(tag.partition(":")[0], {}).get("aliases", {})
        result = {
            "tag": tag,
            "aliases": sorted(a for a, t in aliases.items() if t == tag),
            "path": str(path),
            "card_path": str(path / CARD_FILE),
            "metadata": model_metadata(tag),
        }
        if card and not as_json:
            typer.echo((path / CARD_FILE).read_text())
            return
        emit(result, as_json)


@models_app.command("promote")
def promote(
    name: str = typer.Argument(..., help="Model name (= dataset name)."),
    tag: str = typer.Argument(None, help="Tag or name:challenger (default: the challenger)."),
    reason: str = typer.Option("manual promote", "--reason", help="Recorded in the history."),
    as_json: bool = JSON,
) -> None:
    """Make a model (default: the challenger) champion."""
    with errors_as_exit(as_json, writes=True):
        from tasks import registry

        previous = registry.get_alias(name, registry.CHAMPION)
        champion = registry.promote(name, tag and registry.resolve(tag), reason=reason)
        emit({"name": name, "champion": champion, "previous": previous}, as_json)


@models_app.command("rollback")
def rollback(
    name: str = typer.Argument(..., help="Model name (= dataset name)."),
    reason: str = typer.Option("manual rollback", "--reason", help="Recorded in the history."),
    as_json: bool = JSON,
) -> None:
    """Restore the champion before the current one."""
    with errors_as_exit(as_json, writes=True):
        from tasks import events, registry

        previous = registry.get_alias(name, registry.CHAMPION)
        champion = registry.rollback(name, reason=reason)
        evidence = {"champion_tag": champion, "rolled_back": previous, "reason": reason}
        events.emit_model_rolled_back(name, evidence)  # notifies (prefect.yaml notifications)
        emit({"name": name, "champion": champion, "rolled_back": previous}, as_json)


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.add_typer(models_app, name="models")
