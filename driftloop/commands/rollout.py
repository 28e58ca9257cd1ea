"""``driftloop rollout start|status|step|abort``: a challenger's way to traffic by hand."""

from __future__ import annotations

from typing import Any

import typer

from driftloop.commands.options import JSON, MODEL_DATASET
from driftloop.output import CLIError, emit, errors_as_exit

rollout_app = typer.Typer(help="Shadow or canary rollout of a challenger, decided online.")


def _config(mode: str, **options: Any) -> Any:
    from tasks.rollout.config import RolloutConfig

    given = {k: v for k, v in options.items() if v is not None}
    if "ramp" in given:
        given["ramp"] = tuple(float(s) for s in given["ramp"].split(","))
    try:
        return RolloutConfig(mode=mode, **given)
    except ValueError as exc:
        raise CLIError(f"invalid rollout option: {exc}") from None


@rollout_app.command("start")
def start(
    challenger: str = typer.Argument(
        "challenger", help="Tag of a stored model, or the challenger alias."
    ),
    mode: str = typer.Option(..., "--mode", help="shadow (paired, no traffic) or canary."),
    ramp: str = typer.Option(None, help="Canary shares, e.g. 0.05,0.25,0.5,1"),
    alpha: float = typer.Option(None, help="Always-valid false-decision rate."),
    metric: str = typer.Option(None, help="log_loss | brier | squared_error | absolute_error"),
    margin: float = typer.Option(None, help="Non-inferiority margin (metric units)."),
    min_labels: int = typer.Option(None, help="Labelled rows per arm before any verdict."),
    max_sample: int = typer.Option(None, help="Labelled rows per arm, then no decision."),
    dataset: str = MODEL_DATASET,
    as_json: bool = JSON,
) -> None:
    """Start a rollout: the challenger shadows all traffic, or takes the ramp's first share;
    the scheduled ``rollout`` flow then advances, promotes or rolls it back."""
    with errors_as_exit(as_json):
        from tasks import events
        from tasks.rollout.handoff import start_rollout

        config = _config(mode, ramp=ramp, alpha=alpha, metric=metric, margin=margin,
                         min_labels=min_labels, max_sample=max_sample)  # fmt: skip
        if config.mode == "direct":
            raise CLIError("--mode direct is a promotion: use `driftloop models promote`")
        if challenger == "challenger":
            challenger = f"{dataset}:challenger"
        emit(start_rollout(dataset, challenger, config, reason="manual", emitter=events), as_json)


@rollout_app.command("status")
def status(dataset: str = MODEL_DATASET, as_json: bool = JSON) -> None:
    """The running experiment, its last look, and the arms as the logs show them now."""
    with errors_as_exit(as_json):
        from tasks.rollout import evaluate, experiment
        from tasks.rollout.report import Look

        running = experiment.read_experiment(dataset)
        if running is None:
            emit({"model": dataset, "running": False}, as_json)
            return
        observation = evaluate.observe(running)
        preview = evaluate.decide_look(running, observation)
        look = Look(running, observation, preview, running.champion)
        result = {
            "model": dataset, "running": True,
            "experiment": running.model_dump(mode="json"),
            "arms": look.table(), "next_look": {"action": preview.action,
                                                "reason": preview.reason},
        }  # fmt: skip
        emit(result, as_json)


@rollout_app.command("step")
def step(dataset: str = MODEL_DATASET, as_json: bool = JSON) -> None:
    """Run one look of the rollout flow now (what the schedule does every minute)."""
    with errors_as_exit(as_json):
        from flows.rollout import RolloutRunConfig, rollout

        emit(rollout(config=RolloutRunConfig(dataset=dataset)), as_json)


@rollout_app.command("abort")
def abort(
    dataset: str = MODEL_DATASET,
    reason: str = typer.Option("aborted by hand", "--reason", help="Why, for the record."),
    as_json: bool = JSON,
) -> None:
    """Stop the rollout: all traffic back on the champion, the challenger alias cleared."""
    with errors_as_exit(as_json):
        from tasks import events
        from tasks.rollout.handoff import abort_rollout

        emit(abort_rollout(dataset, reason=reason, emitter=events), as_json)


def register(app: typer.Typer) -> None:
    app.add_typer(rollout_app, name="rollout")
