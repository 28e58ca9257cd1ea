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
