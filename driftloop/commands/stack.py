"""``driftloop stack up|down|status|start-service|stop-service`` and ``driftloop retrain``.

The stack is the local Prefect server (SQLite under DRIFTLOOP_HOME), the process work pool with
the deployments of prefect.yaml, a worker, and any extra service (e.g. ``bentoml serve``).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any

import typer

from driftloop.commands.options import JSON, MODEL_DATASET, NOTIFY_URL
from driftloop.output import CLIError, emit, errors_as_exit

stack_app = typer.Typer(
    help="Start, inspect and stop the local Prefect stack (server, pool, worker, services).",
    no_args_is_help=True,
)


def _stack(**config: Any):
    from driftloop.stack import LocalStack, StackConfig

    return LocalStack(config=StackConfig(**config))


@stack_app.command("up")
def up(
    port: int = typer.Option(None, help="API port on 127.0.0.1 (default: a free one)."),
    poll_s: float = typer.Option(None, "--poll-s", help="Worker poll interval (default 10 s)."),
    deployment: list[str] = typer.Option(
        None, "--deployment", help="Deploy only these (repeatable; default: all)."
    ),
    worker: bool = typer.Option(True, "--worker/--no-worker", help="Start a process worker."),
    deploy: bool = typer.Option(True, "--deploy/--no-deploy", help="Run `prefect deploy`."),
    scheduler: bool = typer.Option(True, "--scheduler/--no-scheduler", help="Run schedules."),
    ui: bool = typer.Option(False, "--ui/--no-ui", help="Serve the Prefect UI."),
    serving_url: str = typer.Option(
        None, "--serving-url", help="The service the deployed monitor reads (prefect.yaml's)."
    ),
    notify_url: str = NOTIFY_URL,
    database: str = typer.Option(
        None, "--database", help="PostgreSQL URL for the Prefect server (default: SQLite)."
    ),
    redis: str = typer.Option(
        None, "--redis", help="Redis URL (prefect-redis extra): broker, cache, ordering, leases."
    ),
    api_servers: int = typer.Option(
        1, "--api-servers", help="API processes (>1 needs --database and --redis)."
    ),
    as_json: bool = JSON,
) -> None:
    """Start the Prefect server, create the work pool, deploy prefect.yaml, start a worker."""
    with errors_as_exit(as_json):
        if serving_url is not None:
            from tasks.monitoring.serving import service_url

            try:
                serving_url = service_url(serving_url)
            except ValueError as exc:
                raise CLIError(f"--serving-url {exc}") from None
        stack = _stack(
            port=port, poll_s=poll_s, deployments=deployment or None, worker=worker,
            deploy=deploy, scheduler=scheduler, ui=ui, database=database, redis=redis,
            api_servers=api_servers, serving_url=serving_url, notify_url=notify_url,
        )  # fmt: skip
        result = stack.up()
        result["hint"] = f"export PREFECT_API_URL={stack.api_url}"
        emit(result, as_json)


@stack_app.command("down")
def down(as_json: bool = JSON) -> None:
    """Stop every stack process (SIGTERM, then SIGKILL after a grace period)."""
    with errors_as_exit(as_json):
        emit({"stopped": _stack().down()}, as_json)


@stack_app.command("status")
def status(as_json: bool = JSON) -> None:
    """Which stack processes run, and whether the API answers."""
    with errors_as_exit(as_json):
        emit(_stack().status(), as_json)


@stack_app.command(
    "start-service", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def start_service(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A name for the service (e.g. bentoml)."),
    health_url: str = typer.Option(None, help="Wait until this URL answers 2xx."),
    as_json: bool = JSON,
) -> None:
    """Start any command as a stack service: driftloop stack start-service NAME -- CMD ..."""
    with errors_as_exit(as_json):
        if not ctx.args:
            raise CLIError("give the command after `--`, e.g. -- bentoml serve ...")
        proc = _stack().start_service(name, list(ctx.args), health_url=health_url)
        emit({"name": name, "pid": proc.record.pid, "log": proc.record.log}, as_json)


@stack_app.command("stop-service")
def stop_service(name: str = typer.Argument(...), as_json: bool = JSON) -> None:
    """Stop one stack service."""
    with errors_as_exit(as_json):
        emit({"name": name, "outcome": _stack().stop_process(name)}, as_json)


@contextmanager
def _prefect_api():
    """Use PREFECT_API_URL, else DRIFTLOOP_PREFECT_API_URL, else this home's running stack."""
    from driftloop.prefect_api import use_api
    from driftloop.stack import LocalStack
    from tasks.settings import get_settings

    url = os.environ.get("PREFECT_API_URL") or get_settings().prefect_api_url
    if not url:
        status = LocalStack().status()
        url = status["api_url"] if status["api_healthy"] else None
    if url is None:
        yield None
        return
    with use_api(url):
        yield url


def retrain(
    dataset: str = MODEL_DATASET,
    strategy: str = typer.Option(
        "full_refit", help="full_refit | sliding_window | warm_start (from the champion)."
    ),
    window_rows: int = typer.Option(None, help="Rows kept by sliding_window / warm_start."),
    trials: int = typer.Option(None, help="Optuna trials (default: the flow's)."),
    margin: float = typer.Option(None, help="Gate: win needed on the gate metric."),
    max_slice_regression: float = typer.Option(None, help="Gate: worst slice loss allowed."),
    rollout: str = typer.Option(
        None, help="direct | shadow | canary: how a winner reaches traffic (default: the flow's)."
    ),
    reason: str = typer.Option("manual", help="Recorded with the run and its events."),
    submit: bool = typer.Option(
        False, "--submit", help="Run through the `retrain` deployment (its concurrency limit)."
    ),
    as_json: bool = JSON,
) -> None:
    """Retrain now: challenger from reference + recent feedback, gate, promote or reject."""
    with errors_as_exit(as_json):
        from flows.retrain import RetrainConfig, RetrainTrigger

        base = RetrainConfig(dataset=dataset, strategy=strategy).model_dump()
        for key, value in (("window_rows", window_rows), ("trials", trials)):
            if value is not None:
                base[key] = value
        for key, value in (("margin", margin), ("max_slice_regression", max_slice_regression)):
            if value is not None:
                base["gate"][key] = value
        if rollout is not None:
            base["rollout"]["mode"] = rollout
        try:
            config = RetrainConfig.model_validate(base)
        except ValueError as exc:
            raise CLIError(f"invalid retrain option: {exc}") from None
        trigger = RetrainTrigger(reason=reason, model=dataset)
        with _prefect_api() as url:
            if submit:
                emit(_submit(url, config, trigger), as_json)
                return
            from flows.retrain import retrain as retrain_flow

            result = retrain_flow(config=config, trigger=trigger)
        emit(result, as_json, _render)


def _submit(url: str | None, config: Any, trigger: Any) -> dict[str, Any]:
    if url is None:
        raise CLIError("--submit needs a Prefect server: `driftloop stack up` or PREFECT_API_URL")
    from prefect.deployments import run_deployment

    params = {"config": config.model_dump(mode="json"), "trigger": trigger.model_dump(mode="json")}
    run = run_deployment("retrain/retrain", parameters=params, timeout=0)
    return {"flow_run_id": str(run.id), "flow_run_name": run.name, "api_url": url}


def _render(result: dict[str, Any]) -> None:
    from rich.console import Console

    verdict = "[green]promoted[/]" if result["promote"] else "[yellow]rejected[/]"
    Console().print(
        f"{verdict}: {result['reason']}\n"
        f"  {result['metric']}: champion {result['champion_score']} "
        f"vs challenger {result['challenger_score']}\n"
        f"  champion now {result['champion_after']} (challenger {result['challenger_tag']})"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(stack_app, name="stack")
    app.command("retrain")(retrain)
