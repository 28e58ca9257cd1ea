"""Data contracts: one module per dataset, plus the shared records (features, predictions)."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path

from schemas.base import DatasetSpec

_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_NOT_DATASETS = {"__init__", "base", "records", "requests"}


class UnknownDatasetError(LookupError):
    """``--dataset NAME`` names no schema module."""


def available_datasets() -> list[str]:
    here = Path(__file__).parent
    return sorted(
        p.stem
        for p in here.glob("*.py")
        if p.stem not in _NOT_DATASETS and not p.stem.startswith("_")
    )


def load_dataset(name: str) -> DatasetSpec:
    """Turn a dataset name (``schemas/<name>.py``) or a path to such a module into its spec."""
    path = Path(name)
    if path.suffix == ".py" and path.exists():
        spec = importlib.util.spec_from_file_location(f"schemas._user_{path.stem}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # pandera resolves annotations through sys.modules
        spec.loader.exec_module(module)
    else:
        if not _NAME.match(name):
            raise UnknownDatasetError(f"invalid dataset name {name!r}: use a python identifier")
        try:
            module = importlib.import_module(f"schemas.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"schemas.{name}":
                raise
            known = ", ".join(available_datasets()) or "none"
            raise UnknownDatasetError(
                f"unknown dataset {name!r}: no schemas/{name}.py (known: {known}); "
                f"create one with `driftloop schema infer`"
            ) from None
    dataset = getattr(module, "DATASET", None)
    if not isinstance(dataset, DatasetSpec):
        raise UnknownDatasetError(f"schema module {name!r} defines no DATASET = DatasetSpec(...)")
    return dataset
