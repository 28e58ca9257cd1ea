"""``driftloop ingest`` and ``driftloop schema infer``."""

from __future__ import annotations

from pathlib import Path

import typer

from driftloop.commands.options import JSON
from driftloop.output import CLIError, emit, errors_as_exit
from tasks.ingest.config import IngestOptions

DEFAULT = IngestOptions()  # the option defaults are the config's
schema_app = typer.Typer(help="Dataset contracts (schema modules).", no_args_is_help=True)


def ingest(
    path: Path = typer.Argument(..., help="CSV or Parquet file."),
    dataset: str = typer.Option("telco", "--dataset", "-d", help="Schema module name."),
    delimiter: str = typer.Option(
        DEFAULT.delimiter, help="CSV field delimiter (default: the dataset's, else ',')."
    ),
    encoding: str = typer.Option(DEFAULT.encoding, help="CSV text encoding."),
    extra_columns: str = typer.Option(
        DEFAULT.extra_columns,
        help="Columns the contract does not name: 'reject' or 'drop' (default: schema's).",
    ),
    max_quarantine_share: float = typer.Option(
        DEFAULT.max_quarantine_share, help="Fail if more rows are quarantined."
    ),
    max_missing_share: float = typer.Option(
        DEFAULT.max_missing_share, help="Fail if a column is more missing."
    ),
    as_json: bool = JSON,
) -> None:
    """Validate a file against its contract; write a versioned snapshot, quarantine and report."""
    with errors_as_exit(as_json, writes=True):
        from tasks.settings import get_settings

        get_settings().ensure_dirs()  # before Prefect starts: its server keeps its DB there
        from flows.ingest import IngestConfig, ingest
        from schemas import load_dataset
        from tasks.ingest.read import check_file

        if extra_columns not in (None, "reject", "drop"):
            raise CLIError(f"--extra-columns must be 'reject' or 'drop', not {extra_columns!r}")
        config = IngestConfig(
            path=str(path), dataset=dataset, delimiter=delimiter, encoding=encoding,
            extra_columns=extra_columns, max_quarantine_share=max_quarantine_share,
            max_missing_share=max_missing_share,
        )  # fmt: skip
        check_file(path, load_dataset(dataset), config)  # clean one-line errors first
        emit(ingest(config), as_json, _render)


def _render(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"ingested data version {result['data_version']}", show_header=False)
    for key in ("rows_in", "rows_accepted", "rows_quarantined", "snapshot", "quarantine", "report"):
        table.add_row(key, str(result[key]))
    Console().print(table)


@schema_app.command("infer")
def infer(
    path: Path = typer.Argument(..., help="CSV or Parquet file to learn the contract from."),
    target: str = typer.Option(..., "--target", help="Label column."),
    id_column: str = typer.Option(None, "--id", help="Entity id column (never a feature)."),
    name: str = typer.Option(None, "--name", help="Dataset name (default: the file's stem)."),
    event_time: str = typer.Option(None, "--event-time", help="Event time column, if any."),
    delimiter: str = typer.Option(",", help="CSV field delimiter."),
    task: str = typer.Option(
        None, "--task", help="binary | multiclass | regression (default: from the target)."
    ),
    positive_class: str = typer.Option(
        None, "--positive-class", help="The positive label of a binary target."
    ),
    out_dir: Path = typer.Option(None, "--out-dir", help="Where to write (default: schemas/)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing module."),
    as_json: bool = JSON,
) -> None:
    """Write schemas/NAME.py (a pandera contract + metadata) inferred from a data file."""
    with errors_as_exit(as_json):
        from tasks.infer import infer_schema, write_schema_module

        inferred = infer_schema(
            Path(path), target=target, id_column=id_column, name=name,
            event_time=event_time, delimiter=delimiter, task=task, positive_class=positive_class,
        )  # fmt: skip
        module = write_schema_module(inferred, out_dir=out_dir, force=force)
        result = {"dataset": inferred.name, "module": str(module), **inferred.summary()}
        emit(result, as_json, _render_infer)


def _render_infer(result: dict) -> None:
    from rich.console import Console

    console = Console()
    console.print(f"wrote [bold]{result['module']}[/bold] (dataset {result['dataset']!r})")
    console.print(f"target {result['target']!r}: {result['task_reason']}")
    if result["positive_class"] is not None:
        console.print(f"positive class: {result['positive_class']!r} (--positive-class to change)")
    if result["ignored"]:
        console.print(f"free text, not used as features: {', '.join(result['ignored'])}")
    console.print("review the module, then: driftloop ingest FILE --dataset " + result["dataset"])


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
    app.add_typer(schema_app, name="schema")
