"""Train flow: a data file in, a tuned, evaluated, tracked and registered model out.

ingest (validated snapshot + data version) -> check -> split -> tune (in-process, or on
``tune_workers`` runs of the tune-worker deployment sharing one study) + fit -> evaluate on test
(metrics, slices, business-value threshold) -> register (BentoML store + model card + alias)
-> reference profile. One W&B run records it all and is always finished.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Literal, TypeVar

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from schemas import load_dataset
from schemas.base import DatasetSpec
from tasks import card, evaluate, profiling, tracking
from tasks.artifacts import train as artifacts
from tasks.features import FeatureSpec
from tasks.ingest import compose
from tasks.settings import get_settings
from tasks.training import distributed, model, register, run, split
from tasks.training.tune import TuneOptions

_Options = TypeVar("_Options")


class TrainConfig(BaseModel):
    """Everything one training run needs; the CLI and deployments map onto these fields.

    ``alias``: ``auto`` makes the new model champion when the model name (= dataset name) has
    no champion yet, else challenger (promotion is then the gate's job); ``champion`` promotes
    it at once; ``challenger`` never touches the champion (what the retrain flow uses).
    ``warm_start`` enqueues the champion's parameters as the first Optuna trial (LightGBM's
    defaults always come next: see ``tasks.training.model.train_model``); ``init_model`` (a tag or
    ``name:champion``) continues training from that model's trees. The study is fresh per run
    unless ``study_name`` names an existing one. Business knobs default to the dataset's
    ``extras``. Same data + seed + trials (n_jobs=1, timeout not reached) = same model.
    """

    dataset: str = "telco"
    data: str | None = Field(None, description="CSV/Parquet file; default: the dataset's own.")
    trials: int = Field(50, ge=1)
    timeout_s: float = Field(900.0, gt=0)
    seed: int = 0
    num_threads: int = Field(1, ge=1)
    n_jobs: int = Field(1, ge=1, description="Parallel Optuna trials (gives up determinism).")
    tune_workers: int = Field(
        1, ge=1, description="Tune-worker deployment runs sharing the study (1: tune in-process)."
    )
    tune_queues: list[str] | None = Field(
        None, description="Work queue of each tune-worker run, in turn (None: the deployment's)."
    )
    tune_deployment: str = distributed.DEPLOYMENT
    pruning: bool = True
    alias: Literal["auto", "champion", "challenger"] = "auto"
    warm_start: bool = True
    init_model: str | None = None
    min_rows: int = Field(200, ge=1)
    study_name: str | None = None
    valid_fraction: float = Field(split.VALID_FRACTION, gt=0, lt=0.5)
    test_fraction: float = Field(split.TEST_FRACTION, gt=0, lt=0.5)
    fail_on_quality: bool = True
    profile: bool = True
    value_retained: float | None = None
    offer_cost: float | None = None
    offer_success_rate: float | None = Field(None, ge=0, le=1)
    reason: str = "train"

    def tune_options(self, storage: str, study_name: str, data_version: str) -> TuneOptions:
        """The tuning budget from these fields, where the study lives, and with
        ``tune_workers > 1`` what the tune workers need to rebuild the run's split."""
        job = None
        if self.tune_workers > 1:
            job = _derive(distributed.TuneJob, self, study_name=study_name,
                          data_version=data_version)  # fmt: skip
        return _derive(TuneOptions, self, storage=storage, study_name=study_name, distributed=job)

    def split_options(self) -> split.SplitOptions:
        return _derive(split.SplitOptions, self)

    def business_value(self, dataset: DatasetSpec) -> evaluate.BusinessValue:
        """The business knobs set here, the dataset's ``extras`` for the rest."""
        knobs = self.model_dump(include={"value_retained", "offer_cost", "offer_success_rate"})
        return evaluate.BusinessValue.from_dataset(dataset, **knobs)


def _derive(options: type[_Options], config: BaseModel, **rest: Any) -> _Options:
    """A task-level options dataclass from the config fields of the same names."""
    names = {f.name for f in fields(options)} - rest.keys()  # type: ignore[arg-type]
    return options(**config.model_dump(include=names), **rest)


ingest_file = task(compose.ingest_file, name="ingest", cache_policy=NO_CACHE)
tune_and_fit = task(model.train_model, name="tune_and_fit", cache_policy=NO_CACHE)
evaluate_model = task(evaluate.evaluate_model, name="evaluate", cache_policy=NO_CACHE)
register_model = task(register.register_model, name="register", cache_policy=NO_CACHE)
save_reference_profile = task(
    profiling.save_reference_profile, name="profile", cache_policy=NO_CACHE
)


@flow(name="train")
def train(config: TrainConfig) -> dict[str, Any]:
    """Train, evaluate and register one model; return what was made (JSON-ready)."""
    settings, clock = get_settings().ensure_dirs(), card.Clock()
    dataset = load_dataset(config.dataset)
    features = FeatureSpec.from_dataset(dataset)
    source = run.resolve_data_path(data=config.data, dataset=dataset)
    ingested = ingest_file(path=source, dataset=dataset, settings=settings)
    splits = split.training_splits(ingested=ingested, dataset=dataset,
                                   options=config.split_options())  # fmt: skip
    prior = register.prior_model(name=dataset.name, features=features, settings=settings,
        warm_start=config.warm_start, init_model=config.init_model)  # fmt: skip
    study = config.study_name or run.new_study_name(dataset.name, ingested.data_version)
    lineage = run.lineage(config=config.model_dump(), data_version=ingested.data_version,
                          source=source, prior=prior, storage=settings.optuna_url)  # fmt: skip
    with tracking.start_run(settings, name=study, config=lineage, group=dataset.name) as tracker:
        trained = tune_and_fit(splits=splits, dataset=dataset, features=features,
            options=config.tune_options(settings.optuna_url, study, ingested.data_version),
            warm_params=prior.warm_params, init_model=prior.init_booster,
            on_trial=tracker.log_trial)  # fmt: skip
        scored = model.score_splits(model=trained, splits=splits, dataset=dataset,
                                    features=features, seed=config.seed)  # fmt: skip
        result = evaluate_model(dataset=dataset, scored=scored,
                                business=config.business_value(dataset))  # fmt: skip
        record = card.model_record(dataset=dataset, data_version=ingested.data_version,
            splits=splits, model=trained, evaluation=result, clock=clock,
            lineage={**lineage, **tracker.references()})  # fmt: skip
        registered = register_model(booster=trained.booster, name=dataset.name, features=features,
            metadata=record.metadata, labels=record.labels, card=record.card,
            alias=config.alias, reason=config.reason, settings=settings)  # fmt: skip
        profile = save_reference_profile(frame=scored.reference, scores=scored.reference_scores,
            model_tag=registered.tag, dataset=dataset, settings=settings,
        ) if config.profile else None  # fmt: skip
        tracker.log_model(tag=registered.tag, model=trained, scored=scored, task=dataset.task,
            threshold=result.threshold, summary=card.summary(record.metadata))  # fmt: skip
    made = run.train_result(registered=registered, metadata=record.metadata,
                            slices=result.slices, profile=profile)  # fmt: skip
    return artifacts.publish_train(result=made)
