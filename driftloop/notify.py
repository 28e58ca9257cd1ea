"""Notifications: promotion, rollback and data-quality failure reach a webhook through Prefect
automations (``call-webhook`` action, one ``Webhook`` block).

Declared beside the deployments, in ``prefect.yaml``'s ``notifications:`` section (driftloop's
own key; ``prefect deploy`` ignores keys it does not know, and deployment triggers can only run
deployments). :func:`apply_notifications` saves the block and replaces the automations of the
same names, so applying twice leaves one of each (``driftloop stack up --notify-url`` does it).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from uuid import UUID

BLOCK_NAME = "driftloop-notify"
SECTION = "notifications"


class Notification(BaseModel):
    """One automation: these events (on a driftloop model) call the webhook with ``payload``
    (a Jinja template; the triggering event is ``event``)."""

    name: str
    description: str = ""
    expect: list[str] = Field(min_length=1)
    match: dict[str, str] = Field(
        default_factory=lambda: {"prefect.resource.id": "driftloop.model.*"}
    )
    payload: str


def load_notifications(prefect_yaml: Path) -> list[Notification]:
    """The ``notifications:`` entries of ``prefect.yaml`` (none: an empty list)."""
    document = yaml.safe_load(prefect_yaml.read_text()) or {}
    return [Notification.model_validate(n) for n in document.get(SECTION) or []]


def save_webhook(url: str, name: str = BLOCK_NAME) -> UUID:
    """The Webhook block the automations call (JSON bodies), saved under ``name``."""
    from prefect.blocks.webhook import Webhook

    block = Webhook(url=url, headers={"Content-Type": "application/json"})
    return block.save(name, overwrite=True)


def apply_notifications(url: str, notifications: list[Notification]) -> dict[str, str]:
    """Save the webhook block and (re)create one automation per notification against the
    current ``PREFECT_API_URL``. Returns automation name -> id."""
    from prefect.client.orchestration import get_client
    from prefect.events.actions import CallWebhook
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    from driftloop.automations import replace_automation

    block_id = save_webhook(url)
    created: dict[str, str] = {}
    with get_client(sync_client=True) as client:
        for n in notifications:
            trigger = EventTrigger(expect=set(n.expect), match=n.match,
                                   posture=Posture.Reactive, threshold=1, within=0)  # fmt: skip
            action = CallWebhook(block_document_id=block_id, payload=n.payload)
            automation = AutomationCore(name=n.name, description=n.description,
                                        trigger=trigger, actions=[action])  # fmt: skip
            created[n.name] = replace_automation(client, automation)
    return created
