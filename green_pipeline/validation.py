"""Checks that a batch can be trusted before anything is computed on it.

Every failure raises :class:`InvalidBatchError` naming the file and the column, so a user fixes the
producer rather than guessing; recoverable oddities (extra columns) are returned as warnings.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from green_pipeline.errors import InvalidBatchError
from green_pipeline.schema import FeatureSchema, category_text

LABEL_VALUES = frozenset({0, 1})


@dataclass(frozen=True)
class ValidationReport:
    rows: int
    columns: int
    positive_rate: float
    warnings: tuple[str, ...]


def validate_batch(frame: pd.DataFrame, schema: FeatureSchema, source: str) -> tuple[pd.DataFrame, ValidationReport]:
    """Return the batch reduced to the schema's columns with clean dtypes, or raise naming the problem."""
    duplicated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
    if duplicated:
        raise InvalidBatchError(f"{source}: duplicate column names {duplicated}; each column must appear once.")
    if frame.empty or len(frame) == 0:
        raise InvalidBatchError(f"{source}: the batch has no rows.")
    if schema.label not in frame.columns:
        raise InvalidBatchError(
            f"{source}: label column {schema.label!r} is missing (columns: {list(map(str, frame.columns))}). "
            "Set dataset.label to the right column."
        )
    missing = [c for c in schema.features if c not in frame.columns]
    if missing:
        raise InvalidBatchError(f"{source}: feature columns {missing} are missing; the deployed model needs them.")

    clean = pd.DataFrame(index=frame.index)
    for column in schema.numeric:
        clean[column] = _numeric_column(frame[column], source, column)
    for column in schema.categorical:
        clean[column] = category_text(frame[column])
    for column in schema.features:
        if clean[column].isna().all():
            raise InvalidBatchError(f"{source}: column {column!r} has no values (all missing).")
    clean[schema.label] = _label_column(frame[schema.label], source, schema.label)

    extra = sorted(str(c) for c in frame.columns if c not in clean.columns)
    warnings = (f"columns {extra} are not features of the model and were ignored",) if extra else ()
    report = ValidationReport(
        rows=len(clean),
        columns=len(schema.features),
        positive_rate=float(clean[schema.label].mean()),
        warnings=warnings,
    )
    return clean.reset_index(drop=True), report


def _numeric_column(values: pd.Series, source: str, column: str) -> pd.Series:
    converted = pd.to_numeric(values, errors="coerce")
    bad = converted.isna() & values.notna()
    if bad.any():
        examples = [str(v) for v in values[bad].unique()[:3]]
        raise InvalidBatchError(
            f"{source}: numeric column {column!r} holds non-numeric values such as {examples} in {int(bad.sum())} rows."
        )
    return converted.astype("float64")


def _label_column(values: pd.Series, source: str, column: str) -> pd.Series:
    if values.isna().any():
        raise InvalidBatchError(f"{source}: label column {column!r} has {int(values.isna().sum())} missing values.")
    numeric = pd.to_numeric(values, errors="coerce")
    unknown = sorted({str(v) for v in values[numeric.isna() | ~numeric.isin(LABEL_VALUES)].unique()})
    if unknown:
        raise InvalidBatchError(f"{source}: label column {column!r} must hold 0 or 1; found {unknown[:5]}.")
    return numeric.astype("int64")
