"""The options several commands take, defined once (same flag, same help everywhere)."""

from __future__ import annotations

import typer

JSON = typer.Option(False, "--json", help="Print exactly one JSON object on stdout.")
MODEL_DATASET = typer.Option("telco", "--dataset", "-d", help="Dataset (= model name).")
NOTIFY_URL = typer.Option(
    None, "--notify-url", help="Webhook called on promotion, rollback, quality failure."
)
