"""The small LightGBM models fitted inside a monitor or replay step (the domain classifier, the
DLE error models, the replay's champion): one thread and deterministic, so the same rows and
seed give the same trees on any machine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import lightgbm as lgb


@dataclass(frozen=True)
class SmallTrees:
    num_trees: int
    learning_rate: float
    min_data_in_leaf: int
    num_leaves: int = 15

    def train(self, objective: str, data: lgb.Dataset, seed: int) -> lgb.Booster:
        import lightgbm as lgb

        params = {
            "objective": objective, "num_leaves": self.num_leaves, "verbose": -1,
            "learning_rate": self.learning_rate, "min_data_in_leaf": self.min_data_in_leaf,
            "num_threads": 1, "seed": seed, "deterministic": True,
        }  # fmt: skip
        return lgb.train(params, data, num_boost_round=self.num_trees)
