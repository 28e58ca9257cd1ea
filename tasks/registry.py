"""The model registry: BentoML's model store plus a small, atomically updated alias index.

BentoML stores the artefacts (``model.txt``, the feature spec, the model card) with labels and
metadata. Which model is ``champion`` and which is ``challenger`` lives in
``$DRIFTLOOP_HOME/models/index.json``: rewritten whole through temp file + fsync + rename under
a file lock, so a crash leaves either the old or the new index, never half of one. A model is
saved completely before any alias can point at it, and its sha256 is checked before it loads.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.features import FeatureSpec
from tasks.io import locked, write_json
from tasks.settings import Settings, get_settings

if TYPE_CHECKING:  # LightGBM is imported where a model is loaded, not with this module
    import lightgbm as lgb

CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_FILE = "model.txt"
FEATURES_FILE = "features.json"
CARD_FILE = "model_card.md"
CHECKSUM_FILE = "checksum.json"


class RegistryError(RuntimeError):
    """A registry operation cannot be done (unknown model, no alias, nothing to roll back)."""


class CorruptModelError(RegistryError):
    """A stored model's files do not match the checksum recorded when it was saved."""


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to predict, with everything needed to use it the way it was trained."""

    tag: str
    booster: lgb.Booster
    features: FeatureSpec
    metadata: dict[str, Any]
    path: Path
    num_threads: int = 1

    @property
    def threshold(self) -> float | None:
        """A binary model's decision threshold (None for the other tasks)."""
        value, task = self.metadata.get("threshold"), self.metadata.get("task", "binary")
        return None if task != "binary" else 0.5 if value is None else float(value)

    def predict(self, matrix: Any) -> Any:
        """Scores for a feature matrix (see ``tasks.features.to_matrix``)."""
        return self.booster.predict(matrix, num_threads=self.num_threads)


def tag_of(model: LoadedModel | None) -> str | None:
    """The model's tag, or None when there is no model."""
    return model.tag if model is not None else None


def _store(settings: Settings):
    # An explicit store, not BentoML's process-wide singleton: the home is a setting.
    # ModelStore and the ``_model_store=`` argument are BentoML 1.4 internals, pinned by
    # test_bentoml_private_model_store_keeps_models_where_settings_say (tests/tasks).
    from bentoml._internal.models.model import ModelStore

    path = settings.bentoml_home / "models"
    path.mkdir(parents=True, exist_ok=True)
    return ModelStore(str(path))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _bento_safe(value: Any) -> Any:
    """BentoML metadata rejects ``None``: drop ``None`` entries from dicts (readers ``.get``)."""
    if isinstance(value, dict):
        return {k: _bento_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_bento_safe(v) for v in value if v is not None]
    return value


def save_model(
    booster: lgb.Booster,
    *,
    name: str,
    features: FeatureSpec,
    metadata: dict[str, Any],
    labels: dict[str, str] | None = None,
    card: str = "",
    settings: Settings | None = None,
) -> str:
    """Store a trained booster with its feature spec, metadata and model card; return its tag.

    ``{{MODEL_TAG}}`` in ``card`` is replaced by the tag the store assigns.
    """
    import bentoml

    settings = settings or get_settings()
    model_bytes = booster.model_to_string(num_iteration=booster.best_iteration or -1).encode()
    features_bytes = json.dumps(features.to_dict(), sort_keys=True).encode()
    checksums = {
        MODEL_FILE: hashlib.sha256(model_bytes).hexdigest(),
        FEATURES_FILE: hashlib.sha256(features_bytes).hexdigest(),
    }
    meta = _bento_safe({**metadata, "sha256": checksums[MODEL_FILE], "saved_at": _now()})
    with bentoml.models.create(
        name,
        labels=labels or {},
        metadata=meta,
        module="driftloop.lightgbm",
        _model_store=_store(settings),
    ) as ref:
        Path(ref.path_of(MODEL_FILE)).write_bytes(model_bytes)
        Path(ref.path_of(FEATURES_FILE)).write_bytes(features_bytes)
        Path(ref.path_of(CARD_FILE)).write_text(card.replace("{{MODEL_TAG}}", str(ref.tag)))
        Path(ref.path_of(CHECKSUM_FILE)).write_text(json.dumps(checksums))
        tag = str(ref.tag)
    return tag


def _get(tag: str, settings: Settings):
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        return bentoml.models.get(tag, _model_store=_store(settings))
    except NotFound:
        raise RegistryError(f"no model {tag!r} in the store at {settings.bentoml_home}") from None


def model_path(tag: str, settings: Settings | None = None) -> Path:
    settings = settings or get_settings()
    return Path(_get(resolve(tag, settings), settings).path)


def model_metadata(tag: str, settings: Settings | None = None) -> dict[str, Any]:
    settings = settings or get_settings()
    return dict(_get(resolve(tag, settings), settings).info.metadata)


def verify_files(path: Path) -> None:
    """Raise :class:`CorruptModelError` unless every stored file matches its recorded sha256."""
    try:
        expected = json.loads((path / CHECKSUM_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise CorruptModelError(f"{path}: checksum file unreadable ({exc})") from None
    for fname, digest in expected.items():
        try:
            actual = hashlib.sha256((path / fname).read_bytes()).hexdigest()
        except OSError as exc:
            raise CorruptModelError(f"{path / fname}: unreadable ({exc})") from None
        if actual != digest:
            raise CorruptModelError(
                f"{path / fname}: sha256 {actual[:12]} != recorded {digest[:12]}"
            )


def load_model(tag: str, settings: Settings | None = None, num_threads: int = 1) -> LoadedModel:
    """Load a stored model after checking its checksum. ``tag`` may be ``name:champion``."""
    settings = settings or get_settings()
    tag = resolve(tag, settings)
    bento_model = _get(tag, settings)
    path = Path(bento_model.path)
    verify_files(path)
    import lightgbm as lgb

    booster = lgb.Booster(model_file=str(path / MODEL_FILE))
    features = FeatureSpec.from_dict(json.loads((path / FEATURES_FILE).read_text()))
    meta = dict(bento_model.info.metadata)
    return LoadedModel(str(bento_model.tag), booster, features, meta, path, num_threads)


def list_models(name: str | None = None, settings: Settings | None = None) -> list[dict[str, Any]]:
    """Stored models (newest first) with their aliases."""
    settings = settings or get_settings()
    index = read_index(settings)
    rows = []
    for m in _store(settings).list(name):
        tag = str(m.tag)
        aliases = index.get(m.tag.name, {}).get("aliases", {})
        rows.append(
            {
                "tag": tag,
                "name": m.tag.name,
                "created": m.info.creation_time.isoformat(),
                "aliases": [a for a, t in aliases.items() if t == tag],
                "metrics": m.info.metadata.get("metrics", {}),
                "data_version": m.info.metadata.get("data_version"),
            }
        )
    return sorted(rows, key=lambda r: r["created"], reverse=True)


# --- alias index ------------------------------------------------------------------------


def read_index(settings: Settings | None = None) -> dict[str, Any]:
    """The alias index: ``{name: {"aliases": {alias: tag}, "history": [...]}}`` (from
    PostgreSQL when ``database_url`` is set: ``tasks.postgres.aliases``)."""
    settings = settings or get_settings()
    if settings.database_url:
        from tasks.postgres import aliases

        return aliases.read_index(settings.database_url)
    try:
        return json.loads(settings.alias_index.read_text())
    except FileNotFoundError:
        return {}


@contextlib.contextmanager
def _locked_index(settings: Settings, name: str) -> Iterator[dict[str, Any]]:
    """Read-modify-write ``name``'s entry, all or nothing: under the file lock, the index
    rewritten atomically on exit; on PostgreSQL, under the model's row lock in one
    transaction (the index yielded then holds ``name`` only)."""
    if settings.database_url:
        from tasks.postgres import aliases

        with aliases.locked_entry(settings.database_url, name) as entry:
            yield {name: entry}
        return
    with locked(settings.alias_index.with_suffix(".lock")):
        index = read_index(settings)
        yield index
        write_json(settings.alias_index, index, sort_keys=True)


def index_signature(settings: Settings) -> tuple | None:
    """Changes whenever an alias moves (what a watcher polls; cheap)."""
    if settings.database_url:
        from tasks.postgres import aliases

        return aliases.signature(settings.database_url)
    try:
        st = settings.alias_index.stat()
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def get_alias(name: str, alias: str, settings: Settings | None = None) -> str | None:
    return read_index(settings).get(name, {}).get("aliases", {}).get(alias)


def resolve(ref: str, settings: Settings | None = None) -> str:
    """``name:champion`` / ``name:challenger`` -> the tag the alias points at; tags pass through."""
    name, _, version = ref.partition(":")
    if version in (CHAMPION, CHALLENGER):
        tag = get_alias(name, version, settings)
        if tag is None:
            raise RegistryError(f"model {name!r} has no {version}")
        return tag
    return ref


@contextlib.contextmanager
def edit_entry(name: str, settings: Settings) -> Iterator[dict[str, Any]]:
    """One model's entry (aliases, history, champion stack, rollout experiment) to change
    under the index lock; the index is written atomically on exit (not on an error)."""
    with _locked_index(settings, name) as index:
        yield _entry(index, name)


def record_move(
    entry: dict[str, Any], alias: str, old: str | None, new: str | None, why: str
) -> None:
    """Append a move of ``alias`` (or of the rollout ``experiment``) to the entry's history."""
    entry["history"].append({"time": _now(), "alias": alias, "from": old, "to": new, "reason": why})


def _entry(index: dict[str, Any], name: str) -> dict[str, Any]:
    entry = index.setdefault(name, {"aliases": {}, "history": []})
    if "champions" not in entry:  # an index written before the champion stack existed
        entry["champions"] = _stack_from_history(entry)
    return entry


def _stack_from_history(entry: dict[str, Any]) -> list[str]:
    stack: list[str] = []
    for move in entry.get("history", []):
        if move["alias"] != CHAMPION:
            continue
        if move.get("reason", "").startswith("rollback") and stack and stack[-1] == move["from"]:
            stack.pop()
        elif move["to"] and (not stack or stack[-1] != move["to"]):
            stack.append(move["to"])
    return stack


def move_champion(entry: dict[str, Any], tag: str | None, why: str) -> None:
    """Move the champion alias and keep the stack of champions (what rollback pops)."""
    old = entry["aliases"].get(CHAMPION)
    if tag is None:
        entry["aliases"].pop(CHAMPION, None)
        if entry["champions"] and entry["champions"][-1] == old:
            entry["champions"].pop()
    else:
        entry["aliases"][CHAMPION] = tag
        if not entry["champions"] or entry["champions"][-1] != tag:
            entry["champions"].append(tag)
    record_move(entry, CHAMPION, old, tag, why)


def set_alias(
    name: str, alias: str, tag: str | None, *, reason: str = "", settings: Settings | None = None
) -> None:
    """Point ``alias`` at ``tag`` (``None`` removes it). The model must be stored and intact."""
    settings = settings or get_settings()
    if tag is not None:
        verify_files(Path(_get(tag, settings).path))
    with _locked_index(settings, name) as index:
        entry = _entry(index, name)
        if alias == CHAMPION:
            move_champion(entry, tag, reason)
            return
        old = entry["aliases"].get(alias)
        if tag is None:
            entry["aliases"].pop(alias, None)
        else:
            entry["aliases"][alias] = tag
        record_move(entry, alias, old, tag, reason)


def promote(
    name: str, tag: str | None = None, *, reason: str = "", settings: Settings | None = None
) -> str:
    """Make ``tag`` (default: the challenger) champion; the challenger alias is cleared."""
    settings = settings or get_settings()
    tag = tag or get_alias(name, CHALLENGER, settings)
    if tag is None:
        raise RegistryError(f"model {name!r} has no challenger to promote")
    verify_files(Path(_get(tag, settings).path))
    with _locked_index(settings, name) as index:
        entry = _entry(index, name)
        move_champion(entry, tag, reason or "promote")
        if entry["aliases"].get(CHALLENGER) == tag:
            entry["aliases"].pop(CHALLENGER)
            record_move(entry, CHALLENGER, tag, None, "promoted")
    return tag


def rollback(name: str, *, reason: str = "", settings: Settings | None = None) -> str:
    """Restore the champion that preceded the current one; return its tag.

    Champions form a stack: promotions push, rollbacks pop. After promoting A, B, C, two
    rollbacks give B then A (not C again); a third fails, as nothing came before A.
    """
    settings = settings or get_settings()
    with _locked_index(settings, name) as index:
        entry = index.get(name)
        if not entry or CHAMPION not in entry["aliases"]:
            raise RegistryError(f"model {name!r} has no champion")
        entry = _entry(index, name)
        stack = entry["champions"]
        if len(stack) < 2:
            raise RegistryError(f"model {name!r}: no earlier champion to roll back to")
        previous = stack[-2]
        verify_files(Path(_get(previous, settings).path))
        current = stack.pop()
        entry["aliases"][CHAMPION] = previous
        record_move(
            entry, CHAMPION, current, previous, f"rollback: {reason}" if reason else "rollback"
        )
    return previous
