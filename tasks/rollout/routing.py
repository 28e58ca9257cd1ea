"""Sticky arm assignment: a keyed BLAKE2b hash of the entity id gives a uniform bucket in
[0, 1); the challenger answers when the bucket is below its share.

The same id and salt give the same bucket in every process and on every machine (no Python
``hash()``, which is salted per process). Raising the share only adds entities to the
challenger: an entity on the challenger at 5% stays on it at 25%. A new salt per experiment
reshuffles who is exposed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Arm = Literal["champion", "challenger"]
EXPERIMENT = "experiment"  # the alias index's key of a model's running experiment
_DIGEST_BYTES = 8
_SHIFT = 11  # keep the top 53 bits: exactly representable, so a bucket is always < 1.0
_SCALE = float(2 ** (8 * _DIGEST_BYTES - _SHIFT))


def _key(salt: str) -> bytes:
    """A fixed-size BLAKE2b key from any salt (keys are limited to 64 bytes)."""
    return hashlib.blake2b(salt.encode(), digest_size=32).digest()


def bucket(entity_id: str | int, salt: str) -> float:
    """The entity's uniform position in [0, 1) for this experiment."""
    return Router(salt, 0.0).bucket(entity_id)


@dataclass(frozen=True)
class Router:
    """Routes entities for one experiment (``salt``) at one challenger ``share``."""

    salt: str
    share: float
    _k: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"share {self.share} is not in [0, 1]")
        object.__setattr__(self, "_k", _key(self.salt))

    def bucket(self, entity_id: str | int) -> float:
        digest = hashlib.blake2b(str(entity_id).encode(), digest_size=_DIGEST_BYTES, key=self._k)
        return (int.from_bytes(digest.digest(), "big") >> _SHIFT) / _SCALE

    def arm(self, entity_id: str | int) -> Arm:
        """The arm that answers this entity (a few microseconds)."""
        return "challenger" if self.bucket(entity_id) < self.share else "champion"

    def buckets(self, entity_ids: Iterable[str | int]) -> np.ndarray:
        """Buckets of many ids (hashlib has no vector form; this is one C call per id)."""
        key, size = self._k, _DIGEST_BYTES
        raw = b"".join(
            hashlib.blake2b(str(i).encode(), digest_size=size, key=key).digest() for i in entity_ids
        )
        top = np.frombuffer(raw, dtype=">u8") >> np.uint64(_SHIFT)
        return top.astype(np.float64) / _SCALE

    def to_challenger(self, entity_ids: Iterable[str | int]) -> np.ndarray:
        """Boolean mask: which of these ids the challenger answers."""
        return self.buckets(entity_ids) < self.share


@dataclass(frozen=True)
class Split:
    """What a serving worker needs to route: the challenger, the routing key and its share
    (``tasks.rollout.experiment`` keeps the rest of the experiment beside it)."""

    experiment_id: str
    mode: Literal["shadow", "canary"]
    challenger: str
    salt: str
    share: float

    def router(self) -> Router:
        return Router(self.salt, self.share)


def split_of(entry: dict[str, Any]) -> Split | None:
    """The split in a model's alias-index entry (``None``: the champion answers everything)."""
    raw = entry.get(EXPERIMENT)
    if not raw:
        return None
    return Split(raw["id"], raw["mode"], raw["challenger"], raw["salt"], float(raw["share"]))
