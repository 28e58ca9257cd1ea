"""``driftloop replay --dataset NAME --data PATH``: the replay benchmark of the monitor's
decisions on any dataset (issue #14), in a throwaway home."""

from __future__ import annotations

from pathlib import Path

import typer

from driftloop.output import emit, errors_as_exit


def replay(
    data: Path = typer.Option(..., "--data", help="CSV or Parquet file (the contract's format)."),
    dataset: str = typer.Option("telco", "--dataset", "-d", help="Schema module name or path."),
    seeds: int = typer.Option(10, min=1, help="Seeded runs per scenario (each its own champion)."),
    windows: int = typer.Option(6, min=3, help="Windows per run (the change from window 2 on)."),
    rows: int = typer.Option(2_000, min=100, help="Rows per window."),
    scenario: list[str] = typer.Option(None, help="Only these scenarios (repeatable)."),
    out: Path = typer.Option(None, "--out", help="Also write the JSON result here."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON object."),
) -> None:
    """Replay every scenario through the real monitor code; rates, delays, estimate quality."""
    with errors_as_exit(as_json):
        from schemas import load_dataset
        from tasks.ingest.compose import read_valid_rows
        from tasks.io import write_json
        from tasks.replay.report import markdown_table, temporary_home, to_json
        from tasks.replay.run import replay_dataset

        spec = load_dataset(dataset)
        frame = read_valid_rows(data, spec).accepted
        with temporary_home():
            result = replay_dataset(frame, spec, seeds=seeds, windows=windows, rows=rows,
                                    scenarios=scenario or None, dataset_ref=dataset)  # fmt: skip
        document = to_json(result)
        if out is not None:
            write_json(out, document)
        emit(document, as_json, render=lambda _: typer.echo(markdown_table(result)))


def register(app: typer.Typer) -> None:
    app.command("replay")(replay)
