"""The replay's generated dataset: a correlated pair the label depends on, so the correlation
flip of the replay changes the joint distribution (and the label's link to the inputs) while
every marginal stays exactly the same."""

from __future__ import annotations

import numpy as np
import polars as pl

from schemas import load_dataset
from tasks.estimation.stats import delong
from tasks.replay.synth import PAIR_CORRELATION, correlated_table, write_correlated
from tasks.simulate import SCENARIOS, inject_drift


def test_generated_table_meets_its_contract_and_the_flip_reverses_the_pair(tmp_path):
    csv, module = write_correlated(tmp_path, rows=4_000, seed=1)
    dataset = load_dataset(str(module))
    frame = dataset.model.validate(pl.read_csv(csv, schema_overrides={"num_0": pl.Float64}))
    assert dataset.numeric_features[0] == "num_0" and dataset.task == "binary"
    pair = frame.select("num_0", "num_1").to_numpy()
    assert abs(np.corrcoef(pair.T)[0, 1] - PAIR_CORRELATION) < 0.03
    y = (frame["target"] == "Yes").to_numpy()
    difference = frame["num_0"].to_numpy() / 3 - frame["num_1"].to_numpy() / 2
    assert delong(y, difference).value > 0.75  # the label rides on how the pair moves together
    flipped = inject_drift(frame, dataset, SCENARIOS["correlation_flip"])
    for col in frame.columns:  # every marginal exactly as it was
        assert flipped[col].sort().equals(frame[col].sort()), col
    moved = flipped.select("num_0", "num_1").to_numpy()
    assert np.corrcoef(moved.T)[0, 1] < -0.7
    moved_difference = flipped["num_0"].to_numpy() / 3 - flipped["num_1"].to_numpy() / 2
    assert delong(y, moved_difference).value < 0.65


def test_generated_table_is_seeded():
    assert correlated_table(500, seed=4).equals(correlated_table(500, seed=4))
    assert not correlated_table(500, seed=4).equals(correlated_table(500, seed=5))


def test_the_harmless_feature_is_one_whose_tilt_leaves_the_reference_auc(tmp_path):
    """The least used feature is not harmless when the rows it selects are the ones the model
    ranks well: here the label follows the score only where ``cat_7`` is its first category,
    so tilting ``cat_7`` raises the AUC; another of the less used half is chosen, one the
    tilt visibly moves."""
    from dataclasses import replace

    from tasks.metrics import roc_auc, weighted_roc_auc
    from tasks.replay.champion import HARMLESS_MIN_SHIFT, SCORE, harmless_feature
    from tasks.simulate import standardised, tilt_weights

    _, module = write_correlated(tmp_path, rows=10, seed=1)
    dataset = load_dataset(str(module))
    frame = correlated_table(6_000, seed=2)
    rng = np.random.default_rng(3)
    pair = (frame["num_0"].to_numpy() - 50) / 3 - (frame["num_1"].to_numpy() - 20) / 2
    score = 1 / (1 + np.exp(-3 * pair))
    ranked = (frame["cat_7"] == "x").to_numpy()
    labels = np.where(ranked, rng.random(score.size) < score, rng.random(score.size) < 0.35)
    reference = frame.with_columns(pl.Series(SCORE, score))
    gains = {"cat_7": 0.0, "num_6": 1.0, "int_5": 2.0, "num_2": 3.0, "num_3": 4.0, "cat_4": 5.0,
             "num_0": 100.0, "num_1": 100.0}  # fmt: skip
    chosen = harmless_feature(dataset, gains, reference, labels.astype(float))
    assert chosen in {"num_6", "int_5", "num_2"}

    def effect(col: str) -> tuple[float, float]:
        spec = replace(SCENARIOS["harmless_covariate"], column=col, within=SCORE)
        w = tilt_weights(reference, dataset, spec)
        shift = float(np.mean(w * standardised(reference, dataset, col)))
        return abs(weighted_roc_auc(labels, score, w) - roc_auc(labels, score)), shift

    assert effect("cat_7")[0] > 0.01  # the least used feature's tilt is not harmless
    assert effect(chosen)[0] < 0.005 and effect(chosen)[1] >= HARMLESS_MIN_SHIFT
