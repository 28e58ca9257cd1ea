"""What each flow run leaves in the Prefect UI: markdown, tables and links under stable keys
(``<flow>-<model>[-<part>]``), so the UI's artifact page shows each one's history.

One module per flow (``ingest``, ``train``, ``score``, ``monitor``, ``retrain``): builders are
pure (typed results in, :class:`Artifact` list out) and each flow calls its one ``publish_*``,
which no-ops outside a flow run. Every artifact names the model tag and the data version it
concerns. :func:`publish` here is the only place that imports ``prefect.artifacts``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from tasks.settings import Settings

Kind = Literal["markdown", "table", "link"]


@dataclass(frozen=True)
class Artifact:
    """One Prefect artifact: ``body`` is markdown, a list of rows, or a link target."""

    key: str
    kind: Kind
    description: str
    body: str | list[dict[str, Any]]
    link_text: str | None = None


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key: lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")


def file_link(path: Path | str) -> str:
    """A ``file://`` URI for a report on disk (the UI shows it as a link)."""
    return Path(path).resolve().as_uri()


def fmt(v: Any, digits: int = 4) -> str:
    """A value for a markdown cell: ``-`` for None, floats to ``digits`` significant digits."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def lineage(model_tag: str | None, data_version: str | None) -> str:
    """The line every artifact carries: which model and which data."""
    return f"Model `{model_tag or '-'}` · data version `{data_version or '-'}`"


def pairs(section: Mapping[str, Any] | None) -> str:
    """``key value, key value`` of a flat mapping."""
    return ", ".join(f"{k} {fmt(v)}" for k, v in (section or {}).items())


def md_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A markdown table from rows with the same keys ('' for no rows)."""
    if not rows:
        return ""
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(fmt(r.get(k)) for k in head) + " |" for r in rows]
    return "\n".join(lines)


def publish(artifacts: Sequence[Artifact]) -> list[str]:
    """Create the artifacts in the current flow run; outside a flow run nothing (returns [])."""
    from prefect.artifacts import (
        create_link_artifact,
        create_markdown_artifact,
        create_table_artifact,
    )
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return []
    for a in artifacts:
        if a.kind == "markdown":
            create_markdown_artifact(str(a.body), key=a.key, description=a.description)
        elif a.kind == "table":
            create_table_artifact(list(a.body), key=a.key, description=a.description)
        else:
            create_link_artifact(
                str(a.body), link_text=a.link_text, key=a.key, description=a.description
            )
    return [a.key for a in artifacts]


def model_data_version(model_tag: str | None, settings: Settings | None) -> str | None:
    """The data version a stored model was trained on (None when unknown)."""
    from tasks.registry import RegistryError, model_metadata

    if not model_tag:
        return None
    try:
        return model_metadata(model_tag, settings).get("data_version")
    except RegistryError:  # a missing model must not fail the run that reports on it
        return None
