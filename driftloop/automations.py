"""Automations the project keeps on its Prefect server, besides prefect.yaml's deployment
triggers: crash detection (here) and the notifications (:mod:`driftloop.notify`).

Crash detection is Prefect's documented zombie-flow automation ("detect zombie flows"): every
flow run emits ``prefect.flow-run.heartbeat`` every ``Settings.flow_heartbeat_s`` (exported as
``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` by ``Settings.library_env``); a proactive trigger, per
flow run, expects a further heartbeat or a final state within ``Settings.crash_after_s`` of
the last heartbeat, and when none comes it sets the run Crashed. A SIGKILLed ``driftloop
train`` (in-process, no runner to report it), a retrain or tune-worker run whose worker died
with it: each would otherwise stay Running for ever (and hold the retrain deployment's
concurrency slot). A run marked Crashed that was only late may still finish: Prefect lets a
Crashed run move on to Completed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.events.schemas.automations import AutomationCore

    from tasks.settings import Settings

CRASH_DETECTION = "driftloop-crash-detection"
HEARTBEAT = "prefect.flow-run.heartbeat"
# Running (the server's own event) starts the watch too: a run killed before its first
# heartbeat reached the server is caught as well (Prefect's documented trigger misses it)
RUNNING = "prefect.flow-run.Running"
FINAL_EVENTS = ("Completed", "Failed", "Cancelled", "Crashed")


def replace_automation(client: SyncPrefectClient, automation: AutomationCore) -> str:
    """Create ``automation`` after deleting any of the same name (applying twice leaves one)."""
    for old in client.read_automations_by_name(name=automation.name):
        client.delete_automation(old.id)
    return str(client.create_automation(automation))


def crash_detection(settings: Settings) -> AutomationCore:
    """The zombie-flow automation for ``settings``' heartbeat rate and grace."""
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    trigger = EventTrigger(
        after={RUNNING, HEARTBEAT},
        expect={HEARTBEAT, *(f"prefect.flow-run.{s}" for s in FINAL_EVENTS)},
        match={"prefect.resource.id": "prefect.flow-run.*"},
        for_each={"prefect.resource.id"},
        posture=Posture.Proactive,
        threshold=1,
        within=timedelta(seconds=settings.crash_after_s),
    )
    action = ChangeFlowRunState(
        state=StateType.CRASHED,
        message=f"No heartbeat for {settings.crash_after_s}s: the run's process is gone.",
    )
    description = (
        f"Mark a flow run Crashed when its heartbeat (every {settings.flow_heartbeat_s}s) "
        f"stops for {settings.crash_after_s}s without a final state."
    )
    return AutomationCore(
        name=CRASH_DETECTION, description=description, trigger=trigger, actions=[action]
    )


def apply_crash_detection(settings: Settings) -> str:
    """(Re)create the crash-detection automation on the current ``PREFECT_API_URL``."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return replace_automation(client, crash_detection(settings))
