"""What training needs from the registry: what a new run inherits from the champion, and
registering the trained model under an alias (save completely first, then move the alias)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.features import FeatureSpec
from tasks.registry import (
    CHALLENGER,
    CHAMPION,
    RegistryError,
    get_alias,
    load_model,
    model_metadata,
    model_path,
    promote,
    save_model,
    set_alias,
)
from tasks.settings import Settings, get_settings

if TYPE_CHECKING:
    import lightgbm as lgb

AUTO = "auto"


@dataclass(frozen=True)
class PriorModel:
    """What a new training run inherits: the champion's parameters (warm start) and a booster
    to continue training from (``init_model``)."""

    champion: str | None
    warm_params: list[dict[str, Any]]
    init_tag: str | None
    init_booster: lgb.Booster | None


def prior_model(
    name: str,
    *,
    warm_start: bool,
    init_model: str | None,
    features: FeatureSpec,
    default_params: dict[str, Any] | None = None,
    settings: Settings | None = None,
) -> PriorModel:
    """The champion's parameters first (when ``warm_start``), then ``default_params``."""
    settings = settings or get_settings()
    champion = get_alias(name, CHAMPION, settings)
    warm: list[dict[str, Any]] = []
    if warm_start and champion is not None:
        warm.append(dict(model_metadata(champion, settings).get("params", {})))
    if default_params:
        warm.append(dict(default_params))
    booster = tag = None
    if init_model:
        loaded = load_model(init_model, settings)
        if loaded.features != features:
            raise RegistryError(
                f"init_model {loaded.tag} was trained on other features "
                f"({list(loaded.features.columns)}); cannot continue training from it"
            )
        booster, tag = loaded.booster, loaded.tag
    return PriorModel(champion, warm, tag, booster)


@dataclass(frozen=True)
class RegisteredModel:
    tag: str
    alias: str
    path: Path


def choose_alias(name: str, alias: str, settings: Settings | None = None) -> str:
    """``auto`` -> ``champion`` when ``name`` has no champion yet, else ``challenger``."""
    if alias != AUTO:
        return alias
    return CHAMPION if get_alias(name, CHAMPION, settings) is None else CHALLENGER


def register_model(
    booster: lgb.Booster,
    *,
    name: str,
    features: FeatureSpec,
    metadata: dict[str, Any],
    labels: dict[str, str],
    card: str,
    alias: str,
    reason: str = "",
    settings: Settings | None = None,
) -> RegisteredModel:
    """Save the model completely, then point the alias at it (two steps: a crash in between
    leaves the index on the previous, complete model)."""
    settings = settings or get_settings()
    alias = choose_alias(name, alias, settings)
    metadata = {**metadata, "registered_as": alias}
    tag = save_model(
        booster, name=name, features=features, metadata=metadata, labels=labels,
        card=card, settings=settings,
    )  # fmt: skip
    if alias == CHAMPION:
        promote(name, tag, reason=reason or "train", settings=settings)
    else:
        set_alias(name, alias, tag, reason=reason or "train", settings=settings)
    return RegisteredModel(tag, alias, model_path(tag, settings))
