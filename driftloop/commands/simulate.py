"""``driftloop simulate KIND --data PATH --out PATH``: inject drift into any dataset."""

from __future__ import annotations

from pathlib import Path

import typer

from driftloop.output import emit, errors_as_exit


def simulate(
    kind: str = typer.Argument(
        ..., help="covariate | prior | concept | label_noise | missing | schema_break"
    ),
    data: Path = typer.Option(..., "--data", help="CSV or Parquet file (the contract's format)."),
    out: Path = typer.Option(..., "--out", help="Where to write the drifted copy (.csv/.parquet)."),
    dataset: str = typer.Option("telco", "--dataset", "-d", help="Schema module name."),
    severity: float = typer.Option(0.5, help="How strong: std shifts, flip probability, share."),
    column: str = typer.Option(None, help="Feature used by the rule (default: from the contract)."),
    seed: int = typer.Option(0, help="Random seed."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON object."),
) -> None:
    """Write a drifted copy of a dataset file (rows that fail the contract are left out)."""
    with errors_as_exit(as_json):
        from schemas import load_dataset
        from tasks.ingest.compose import read_valid_rows
        from tasks.ingest.snapshot import write_table
        from tasks.simulate import DriftSpec, inject_drift

        spec = load_dataset(dataset)
        rows = read_valid_rows(data, spec)
        drifted = inject_drift(
            rows.accepted, spec, DriftSpec(kind=kind, severity=severity, column=column, seed=seed)
        )
        write_table(drifted, out, delimiter=spec.delimiter)  # ingestible as the contract says
        emit(
            {
                "kind": kind,
                "rows_in": rows.accepted.height + rows.quarantined.height,
                "rows_valid": rows.accepted.height,
                "rows_out": drifted.height,
                "out": str(out),
            },
            as_json,
        )


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
