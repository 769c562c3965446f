"""Which columns are features, which is the label, and how categories are encoded.

The encoding is frozen with the model (stored in its metadata), so a warm start or a prediction
months later sees the same category codes the model was trained on; unseen categories become
missing values, which LightGBM routes like any other missing value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from green_pipeline.errors import InvalidBatchError, InvalidConfigError

#: A categorical column with more distinct values than this is almost surely an id or free text.
MAX_INFERRED_CATEGORIES = 50
#: An inferred text column whose values are at least this share numbers is a number column with bad values.
MOSTLY_NUMERIC_SHARE = 0.9


@dataclass(frozen=True)
class DatasetSpec:
    """What the user tells us about a dataset; unset feature lists are inferred from the first batch."""

    label: str
    features: tuple[str, ...] | None = None
    categorical: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not self.label:
            raise InvalidConfigError("dataset.label is empty: name the label column of your batches.")
        if self.features is not None and self.label in self.features:
            raise InvalidConfigError(f"dataset.features lists the label column {self.label!r}; remove it.")
        if self.categorical is not None and self.features is not None:
            unknown = sorted(set(self.categorical) - set(self.features))
            if unknown:
                raise InvalidConfigError(f"dataset.categorical names columns not in dataset.features: {unknown}")


@dataclass(frozen=True)
class FeatureSchema:
    """The resolved schema of a model: label, numeric features, and categorical features with categories."""

    label: str
    numeric: tuple[str, ...]
    categories: dict[str, tuple[str, ...]]

    @property
    def categorical(self) -> tuple[str, ...]:
        return tuple(self.categories)

    @property
    def features(self) -> tuple[str, ...]:
        return self.numeric + self.categorical

    def restricted_to(self, features: Sequence[str]) -> FeatureSchema:
        """This schema on ``features`` only, in its own column order and with its frozen categories."""
        kept = set(features)
        return FeatureSchema(
            label=self.label,
            numeric=tuple(c for c in self.numeric if c in kept),
            categories={c: values for c, values in self.categories.items() if c in kept},
        )

    def encode(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Feature matrix with numeric columns as float and categoricals on the frozen categories."""
        encoded = pd.DataFrame(index=frame.index)
        for column in self.numeric:
            encoded[column] = frame[column].astype("float64")
        for column, values in self.categories.items():
            encoded[column] = pd.Categorical(category_text(frame[column]), categories=list(values))
        return encoded

    def labels(self, frame: pd.DataFrame) -> pd.Series:
        return frame[self.label].astype("int64")


def infer_schema(frame: pd.DataFrame, spec: DatasetSpec, source: str) -> FeatureSchema:
    """Resolve the feature lists of ``spec`` against a batch: numeric dtypes are numeric, the rest categorical."""
    check_unique_columns(frame, source)
    features: Sequence[str] = spec.features or [c for c in frame.columns if c != spec.label]
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise InvalidBatchError(f"{source}: columns {missing} named in dataset.features are not in the batch.")
    categorical = set(spec.categorical) if spec.categorical is not None else None
    numeric: list[str] = []
    categories: dict[str, tuple[str, ...]] = {}
    for column in features:
        is_numeric = pd.api.types.is_numeric_dtype(frame[column]) and not pd.api.types.is_bool_dtype(frame[column])
        if categorical is not None:
            is_numeric = column not in categorical
        if is_numeric:
            numeric.append(column)
            continue
        if categorical is None:
            _refuse_mostly_numeric_text(frame[column], source, column)
        values = sorted(category_text(frame[column]).dropna().unique())
        if categorical is None and len(values) > MAX_INFERRED_CATEGORIES:
            raise InvalidBatchError(
                f"{source}: column {column!r} has {len(values)} distinct text values; it looks like an id. "
                "List the model's columns in dataset.features to leave it out."
            )
        categories[column] = tuple(str(v) for v in values)
    if not numeric and not categories:
        raise InvalidBatchError(f"{source}: no feature columns besides the label {spec.label!r}.")
    return FeatureSchema(label=spec.label, numeric=tuple(numeric), categories=categories)


def batch_columns(schema: FeatureSchema | None, spec: DatasetSpec) -> tuple[str, ...] | None:
    """The columns worth reading from a batch file: the serving model's, else the configured features; None: all.

    The first model infers its features from every column, so without either nothing can be left out.
    """
    if schema is not None:
        return (*schema.features, schema.label)
    if spec.features is not None:
        return (*spec.features, spec.label)
    return None


def check_unique_columns(frame: pd.DataFrame, source: str) -> None:
    """Repeated column names make ``frame[column]`` a frame, not a column: refuse them before any lookup."""
    duplicated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
    if duplicated:
        raise InvalidBatchError(
            f"{source}: duplicate column names {duplicated}; each column must appear once. "
            "Rename or drop the repeated columns."
        )


def _refuse_mostly_numeric_text(values: pd.Series, source: str, column: str) -> None:
    """A number column with a few stray strings would otherwise be frozen into the first model as a category."""
    present = values.dropna()
    parsed = pd.to_numeric(present, errors="coerce")
    bad = parsed.isna()
    if len(present) and bad.any() and (~bad).mean() >= MOSTLY_NUMERIC_SHARE:
        examples = [str(v) for v in present[bad].unique()[:3]]
        raise InvalidBatchError(
            f"{source}: column {column!r} is mostly numbers but holds text such as {examples} in {int(bad.sum())} "
            "rows; fix those values in the producer, or list the column in dataset.categorical if it is a category."
        )


def category_text(values: pd.Series) -> pd.Series:
    """Categories as text, with integral numbers written as integers: a code 3 read once as int and once as
    float (a missing value turns an int column into float) must stay the same category "3", not "3.0"."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        as_float = values.astype("float64")
        integral = as_float.notna() & (as_float % 1 == 0)
        text = as_float.astype("string")
        text[integral] = as_float[integral].astype("int64").astype("string")
        return text
    return values.astype("string")
