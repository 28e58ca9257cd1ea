"""The request contract checked over a whole micro-batch at once, for the records that pass.

Each field's rule is read once from the contract (``schemas.requests.FieldRule``, the same
rules the pydantic record model is made from): the decoded values of a batch are type-checked
per column as pydantic's strict mode types them (an ``int`` field takes an ``int``, not a bool
or ``5.0``; a ``float`` field an ``int`` or a ``float``), put into the contract-typed frame,
and the allowed values, bounds, patterns and lengths run as one polars query. The check only
*accepts*: a record it does not accept is validated by the pydantic model itself, which gives
its dead letter every reason and has the last word. So this check may refuse more than the
contract does, never less (``tests/streaming/test_fastcheck.py`` holds it to that).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import orjson
import polars as pl

if TYPE_CHECKING:
    from schemas.requests import FieldRule, RequestModels

_TYPES: dict[type, frozenset[type]] = {  # what a strict pydantic field takes from JSON
    int: frozenset({int}),
    float: frozenset({float, int}),
    bool: frozenset({bool}),
    str: frozenset({str}),
}
_NONE = type(None)
NOT_JSON = object()  # a body orjson cannot decode (pydantic says why)


@dataclass(frozen=True)
class Accepted:
    """The records the check accepts (indices into the batch) and their typed rows."""

    rows: list[int]
    values: list[dict[str, Any]]  # their decoded fields
    frame: pl.DataFrame | None  # contract-typed, one row per accepted record


@dataclass(frozen=True)
class FastCheck:
    columns: tuple[str, ...]
    types: tuple[frozenset[type], ...]  # per column: the Python types its field takes
    schema: dict[str, pl.DataType]
    rules: pl.Expr | None  # every value rule, one boolean per row (None: no rule)
    keys: frozenset[str] | None  # the fields a record may have (None: others are ignored)
    fields: tuple[FieldRule, ...] = ()  # the rules, for the whole-column pass of all_pass

    def accept(self, bodies: list[bytes]) -> Accepted:
        """The records among ``bodies`` that certainly pass the contract's field rules."""
        decoded = [_loads(b) for b in bodies]
        keys = self.keys
        rows = [i for i, obj in enumerate(decoded)
                if type(obj) is dict and (keys is None or obj.keys() <= keys)]  # fmt: skip
        values = [decoded[i] for i in rows]
        cols = _columns(values, self.columns)
        bad = {j for col, ok in zip(cols, self.types, strict=True)
               if not set(map(type, col)) <= ok
               for j, x in enumerate(col) if type(x) not in ok}  # fmt: skip
        frame = None
        for _ in range(2):  # a second time without the numbers a 64-bit column cannot hold
            if bad:
                keep = [j for j in range(len(rows)) if j not in bad]
                rows, values = [rows[j] for j in keep], [values[j] for j in keep]
                cols = [[col[j] for j in keep] for col in cols]
            try:
                frame = self._frame(cols)
                break
            except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError):
                bad = {j for col in cols for j, x in enumerate(col)
                       if type(x) is int and not _I64[0] <= x <= _I64[1]}  # fmt: skip
        if frame is None:
            return Accepted([], [], None)  # pydantic decides them all
        if self.rules is not None and frame.height and not self.all_pass(cols, frame):
            try:
                ok = frame.select(self.rules).to_series()
            except pl.exceptions.PolarsError:  # a rule polars cannot run: pydantic decides
                return Accepted([], [], None)
            if not ok.all():
                keep = ok.arg_true().to_list()
                rows, values = [rows[j] for j in keep], [values[j] for j in keep]
                frame = frame[keep]
        return Accepted(rows, values, frame)

    def all_pass(self, cols: list[Any], frame: pl.DataFrame) -> bool:
        """Whether every value passes its field's rules, by one aggregate per rule and column
        (a clean batch: no per-row query, whose planning alone costs ~1 ms); False sends the
        batch to the per-row query, which finds the rows."""
        for rule, col in zip(self.fields, cols, strict=True):
            values = [v for v in col if v is not None] if rule.nullable else col
            if values and not _column_passes(rule, values, frame[rule.name]):
                return False
        return True

    def _frame(self, cols: list[Any]) -> pl.DataFrame:
        return pl.DataFrame(
            [
                pl.Series(c, col, dtype=self.schema[c], strict=True)
                for c, col in zip(self.columns, cols, strict=True)
            ]  # fmt: skip
        )


_I64 = (-(2**63), 2**63 - 1)


def _columns(values: list[dict[str, Any]], columns: tuple[str, ...]) -> list[Any]:
    """The records' values column by column (an absent field is None)."""
    if len(columns) > 1 and values:
        try:  # every field present (the common case): transposed in C
            return list(zip(*map(itemgetter(*columns), values), strict=True))
        except KeyError:
            pass
    return [[v.get(c) for v in values] for c in columns]


def _loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return NOT_JSON


def _conditions(rule: FieldRule) -> list[pl.Expr]:
    col, c = pl.col(rule.name), rule.constraints
    conds = [] if rule.allowed is None else [col.is_in(list(rule.allowed))]
    conds += [op(col, c[k]) for k, op in _BOUNDS.items() if c.get(k) is not None]
    if rule.base is float:
        conds.append(col.is_finite())
    if c.get("pattern") is not None:
        conds.append(col.str.contains(c["pattern"]))
    if c.get("min_length") is not None:
        conds.append(col.str.len_chars() >= c["min_length"])
    if c.get("max_length") is not None:
        conds.append(col.str.len_chars() <= c["max_length"])
    return [cond.fill_null(True) for cond in conds]  # a null passed the type check: allowed


def _column_passes(rule: FieldRule, values: Any, typed: pl.Series) -> bool:
    """Every (non-null, type-checked) value of one column passes ``rule``: the same tests
    as :func:`_conditions`, on the column's set, extremes and lengths."""
    c = rule.constraints
    if rule.allowed is not None and not set(values) <= set(rule.allowed):
        return False  # `in`, as the model's allowed-values check (and Literal) compare
    if rule.base is float:  # compared as the model compares: after the value became a float
        try:
            values = list(map(float, values))
        except OverflowError:
            return False
        if not (math.isfinite(min(values)) and math.isfinite(max(values))):
            return False
    bounds = [(k, v) for k, v in c.items() if k in _BOUNDS and v is not None]
    if bounds:
        lo, hi = min(values), max(values)
        if not all(_PASSES[k](lo, hi, v) for k, v in bounds):
            return False
    if c.get("min_length") is not None and min(map(len, values)) < c["min_length"]:
        return False
    if c.get("max_length") is not None and max(map(len, values)) > c["max_length"]:
        return False
    # a pattern by polars' regex engine (pydantic's: Python's ``re`` differs, e.g. on ``$``)
    return c.get("pattern") is None or bool(typed.str.contains(c["pattern"]).all())


_PASSES = {  # (lowest, highest value, bound) -> every value within the bound
    "ge": lambda lo, hi, v: lo >= v,
    "gt": lambda lo, hi, v: lo > v,
    "le": lambda lo, hi, v: hi <= v,
    "lt": lambda lo, hi, v: hi < v,
}

_BOUNDS = {
    "ge": lambda col, v: col >= v,
    "gt": lambda col, v: col > v,
    "le": lambda col, v: col <= v,
    "lt": lambda col, v: col < v,
}

_CACHE: dict[int, tuple[RequestModels, FastCheck | None]] = {}


def fast_check(models: RequestModels) -> FastCheck | None:
    """The (cached) batch check of ``models``; None when a field's type has none (dates)."""
    hit = _CACHE.get(id(models))
    if hit is None or hit[0] is not models:
        hit = _CACHE[id(models)] = (models, _build(models))
    return hit[1]


def _build(models: RequestModels) -> FastCheck | None:
    if not models.rules or any(r.base not in _TYPES for r in models.rules):
        return None
    types = tuple(_TYPES[r.base] | ({_NONE} if r.nullable else set()) for r in models.rules)
    conds = [cond for r in models.rules for cond in _conditions(r)]
    rules = pl.all_horizontal(conds).alias("ok") if conds else None
    if rules is not None:
        try:  # a pattern polars cannot compile: leave every record to pydantic
            empty = pl.DataFrame(schema=models.polars_schema)
            empty.select(rules)
        except pl.exceptions.PolarsError:
            return None
    keys = frozenset(models.input_columns) if models.extra == "forbid" else None
    return FastCheck(models.input_columns, types, models.polars_schema, rules, keys, models.rules)
