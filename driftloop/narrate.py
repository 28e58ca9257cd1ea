"""How the demo narrates itself: a timeline of stages with wall times, a one-line note per
monitor run, and the closing summary tables (rich, on stderr)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table


@dataclass
class Timeline:
    """Each stage with its wall time, narrated as it goes."""

    console: Console
    stages: list[tuple[str, float, str]] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[dict[str, str]]:
        note: dict[str, str] = {}
        start = time.monotonic()
        with self.console.status(f"[bold]{name}[/]…"):
            yield note
        took = time.monotonic() - start
        self.stages.append((name, took, note.get("detail", "")))
        self.console.print(
            f"[green]✓[/] {name} [dim]({took:.1f}s, t+{time.monotonic() - self.t0:.0f}s)[/]"
            + (f" — {note['detail']}" if note.get("detail") else "")
        )


def monitor_note(report: dict[str, Any]) -> str:
    d = report.get("drift") or {}
    drifted = ", ".join(d.get("drifted_features", [])[:4]) or "none"
    events = ", ".join(e["event"] for e in report.get("events", [])) or "no event"
    return (
        f"{report['window']['rows']} rows, drift score {d.get('score', 0):.2f} "
        f"(threshold {d.get('threshold')}), drifted: {drifted}; "
        f"{report['decision']['action']}; {events}"
    )


def render_summary(summary: dict[str, Any], console: Console) -> None:
    table = Table(title="driftloop demo: the loop, closed", show_header=False)
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    rows = [
        ("champion before", summary["champion_before"]),
        ("champion after", summary["champion_after"]),
        ("decision", "promoted" if summary["promoted"] else "rejected: champion kept"),
        ("gate", summary["gate_event"]["payload"].get("reason", "")),
        ("AUC on drifted traffic, before swap", summary["auc_drifted_before_swap"]),
        ("AUC on drifted traffic, after swap", summary["auc_drifted_after_swap"]),
        ("drift onset → detection (s)", summary["seconds_drift_onset_to_detection"]),
        ("event → retrain start (s)", summary["seconds_event_to_retrain_start"]),
        (
            "retrain start → new model serving (s)",
            summary["seconds_retrain_start_to_new_model_serving"],
        ),  # fmt: skip
        ("failed requests", summary["failed_requests"]),
        ("total (s)", summary["total_seconds"]),
    ]
    for k, v in rows:
        table.add_row(k, fmt(v) if v is not None else "—")
    console.print(table)
    stages = Table(title="timeline")
    stages.add_column("stage")
    stages.add_column("seconds", justify="right")
    for s in summary["stages"]:
        stages.add_row(s["stage"], f"{s['seconds']:.1f}")
    console.print(stages)
    console.print(f"Prefect UI:   {summary['prefect_ui']}")
    console.print(f"drift report: {summary['drift_report']}")
    console.print(f"model card:   {summary['model_card']}")
    console.print(f"W&B offline:  {summary['wandb_sync']}")
