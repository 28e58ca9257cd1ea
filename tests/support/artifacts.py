"""Reading a flow run's artifacts back through the Prefect API (the tests' view of the UI)."""

from __future__ import annotations

from typing import Any


def latest_artifacts(*keys: str) -> dict[str, Any]:
    """The newest artifact under each key (``ArtifactCollection``: key, type, data, ...)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactCollectionFilter, ArtifactCollectionFilterKey

    wanted = ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=list(keys)))
    with get_client(sync_client=True) as client:
        found = client.read_latest_artifacts(artifact_filter=wanted)
    return {a.key: a for a in found}


def table_rows(artifact: Any) -> list[dict[str, Any]]:
    """A table artifact's rows (Prefect stores the table as a JSON string)."""
    import json

    data = artifact.data
    return json.loads(data) if isinstance(data, str) else data
