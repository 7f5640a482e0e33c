"""The metadata a model is conditioned on: named fields, each categorical (its values named) or
continuous (a range), read from text and encoded as the vector y that joins the encoder's
input and the code.

Encoding, field by field in order, concatenated: a categorical field is one-hot over its
values; a continuous field is two numbers, (value - low) / (high - low) and 1. An unknown value
(an empty CSV cell) is all zeros, as label dropout hides a label: the model learns what to do
without it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Literal

import numpy as np

Kind = Literal["categorical", "continuous"]
UNKNOWN = math.nan  # a field's value when the metadata leaves it empty
MAX_VALUES = 1000  # values of one categorical field
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
# The served signatures' own inputs (cvae.serving.contract.field_signatures), and restyle's
# to_<field>: no field may take these names.
RESERVED = ("images", "z", "seed")


class FieldError(ValueError):
    """A field's definition or a value given for it is wrong; the message names both."""


@dataclasses.dataclass(frozen=True)
class Field:
    """One metadata field. `values`: a categorical field's names, in the order of its one-hot
    code; `low`, `high`: a continuous field's range (values outside it are refused)."""

    name: str
    kind: Kind = "categorical"
    values: tuple[str, ...] = ()
    low: float = 0.0
    high: float = 1.0
    description: str = ""

    def __post_init__(self):
        if not _NAME.fullmatch(self.name):
            raise FieldError(f"field name {self.name!r}: use letters, digits and _ (a letter "
                             f"first, at most 64)")
        if self.name.lower() in RESERVED or self.name.lower().startswith("to_"):
            raise FieldError(f"field name {self.name!r}: {', '.join(RESERVED)} and to_... are "
                             f"the served signatures' own inputs")
        if self.kind == "categorical":
            if not 1 <= len(self.values) <= MAX_VALUES:
                raise FieldError(f"field {self.name}: a categorical field needs 1 to "
                                 f"{MAX_VALUES} values, got {len(self.values)}")
            if any(not v.strip() for v in self.values):
                raise FieldError(f"field {self.name}: a value is empty")
            repeated = sorted({v for v in self.values if self.values.count(v) > 1})
            if repeated:
                raise FieldError(f"field {self.name}: value(s) {', '.join(repeated)} repeated")
        elif self.kind == "continuous":
            if not (math.isfinite(self.low) and math.isfinite(self.high)
                    and self.low < self.high):
                raise FieldError(f"field {self.name}: the range {self.low}..{self.high} needs "
                                 f"finite low < high")
        else:
            raise FieldError(f"field {self.name}: kind {self.kind!r} is not categorical or "
                             f"continuous")

    @property
    def width(self) -> int:
        """The numbers this field takes in the encoded vector y."""
        return len(self.values) if self.kind == "categorical" else 2

    def parse(self, text) -> float:
        """A value given as text (or a number): a categorical field's value name (exactly, or
        else ignoring case) -> its index; a continuous field's number, checked against the
        range. Empty -> UNKNOWN. Raises FieldError naming the field and the value."""
        if text is None or (isinstance(text, float) and math.isnan(text)):
            return UNKNOWN
        raw = str(text).strip()
        if raw == "":
            return UNKNOWN
        if self.kind == "categorical":
            if raw in self.values:
                return float(self.values.index(raw))
            folded = [v.casefold() for v in self.values]
            if raw.casefold() in folded:
                return float(folded.index(raw.casefold()))
            shown = ", ".join(self.values[:20]) + (", ..." if len(self.values) > 20 else "")
            raise FieldError(f"field {self.name}: unknown value {raw!r}; its values are {shown}")
        try:
            value = float(raw)
        except ValueError:
            raise FieldError(f"field {self.name}: {raw!r} is not a number") from None
        if not self.low <= value <= self.high:
            raise FieldError(f"field {self.name}: {raw} is outside its range "
                             f"{self.low:g}..{self.high:g}")
        return value

    def to_json(self) -> dict:
        out = {"name": self.name, "kind": self.kind}
        if self.kind == "categorical":
            out["values"] = list(self.values)
        else:
            out.update(low=self.low, high=self.high)
        if self.description:
            out["description"] = self.description
        return out

    @classmethod
    def from_json(cls, data: dict) -> "Field":
        unknown = sorted(set(data) - {"name", "kind", "values", "low", "high", "description"})
        if unknown:
            raise FieldError(f"field {data.get('name')!r}: unknown key(s) {', '.join(unknown)}")
        return cls(name=data["name"], kind=data.get("kind", "categorical"),
                   values=tuple(data.get("values", ())), low=float(data.get("low", 0.0)),
                   high=float(data.get("high", 1.0)), description=data.get("description", ""))


GRID_ROWS = 20  # at most this many values of a categorical field in a grid of samples
GRID_LEVELS = 5  # levels of a continuous field in a grid of samples


def grid_levels(field: Field) -> np.ndarray:
    """The values of a grid of samples' rows, one row each: a categorical field's first
    GRID_ROWS value indices, or GRID_LEVELS levels spanning a continuous field's range."""
    if field.kind == "categorical":
        return np.arange(min(len(field.values), GRID_ROWS))
    return np.linspace(field.low, field.high, GRID_LEVELS)


def check_fields(fields) -> tuple[Field, ...]:
    """The fields as a tuple, refusing none and repeated names."""
    fields = tuple(fields)
    if not fields:
        raise FieldError("a model needs at least one metadata field")
    names = [f.name.lower() for f in fields]  # serving's argument names ignore case
    repeated = sorted({f.name for f in fields if names.count(f.name.lower()) > 1})
    if repeated:
        raise FieldError(f"field(s) {', '.join(repeated)} defined twice (names are compared "
                         f"ignoring case)")
    return fields


def width(fields) -> int:
    """The length of the encoded vector y."""
    return sum(f.width for f in fields)


def encode(fields, values: np.ndarray) -> np.ndarray:
    """Parsed values float [N, len(fields)] (UNKNOWN = NaN) -> y float32 [N, width(fields)]."""
    values = np.asarray(values, np.float64)
    if values.ndim != 2 or values.shape[1] != len(fields):
        raise FieldError(f"values of shape {values.shape} do not match the {len(fields)} "
                         f"field(s) {', '.join(f.name for f in fields)}")
    parts = []
    for i, field in enumerate(fields):
        column = values[:, i]
        known = ~np.isnan(column)
        if field.kind == "categorical":
            onehot = np.zeros([len(column), field.width], np.float32)
            rows = np.flatnonzero(known)
            onehot[rows, column[rows].astype(np.int64)] = 1.0
            parts.append(onehot)
        else:
            scaled = np.where(known, (column - field.low) / (field.high - field.low), 0.0)
            parts.append(np.stack([scaled, known], axis=1).astype(np.float32))
    return np.concatenate(parts, axis=1)


def encode_tensor(fields, values):
    """`encode` in TensorFlow, for the model and its signatures: values float32 [B,
    len(fields)] (NaN unknown; a categorical value its index) -> y float32 [B, width]. An
    index outside a categorical field's values encodes as unknown (all zeros): callers that
    take values from users check them first."""
    import tensorflow as tf

    values = tf.cast(values, tf.float32)
    parts = []
    for i, field in enumerate(fields):
        column = values[:, i]
        known = tf.logical_not(tf.math.is_nan(column))
        if field.kind == "categorical":
            index = tf.where(known, tf.cast(tf.where(known, column, 0.0), tf.int32), -1)
            parts.append(tf.one_hot(index, field.width, dtype=tf.float32))
        else:
            scaled = (column - field.low) / (field.high - field.low)
            parts.append(tf.stack([tf.where(known, scaled, 0.0),
                                   tf.cast(known, tf.float32)], axis=1))
    return tf.concat(parts, axis=1)
