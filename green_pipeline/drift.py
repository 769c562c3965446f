"""Data drift of a batch against the deployed model's reference data, decided by Evidently 0.7.

Evidently picks each column's test by type and size (K-S or chi-square p-values on small data,
normalised Wasserstein or Jensen-Shannon distances on large) and says whether it drifted; we keep
its per-column verdicts and scores and its share of drifted columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

from green_pipeline.errors import DriftDetectionError
from green_pipeline.schema import FeatureSchema

DRIFT_TEST_ID = "drift"


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str
    score: float
    threshold: float
    drifted: bool

    @property
    def severity(self) -> float:
        """How far past its threshold the column is, comparable across p-value and distance tests."""
        if "p_value" in self.method:
            return self.threshold / max(self.score, 1e-300)
        return self.score / self.threshold if self.threshold else self.score


@dataclass(frozen=True)
class DriftResult:
    """Outcome of comparing a batch with the reference; ``drifted_share`` is None when there is no reference."""

    drifted_share: float | None
    drifted_count: int
    column_count: int
    threshold: float
    reference_rows: int
    current_rows: int
    columns: tuple[ColumnDrift, ...] = ()

    @property
    def compared(self) -> bool:
        return self.drifted_share is not None

    @property
    def passes_threshold(self) -> bool:
        return self.drifted_share is not None and self.drifted_share >= self.threshold

    def top_columns(self, limit: int = 5) -> tuple[ColumnDrift, ...]:
        ranked = sorted(self.columns, key=lambda c: (c.drifted, c.severity), reverse=True)
        return tuple(ranked[:limit])


def detect_drift(
    current: pd.DataFrame, reference: pd.DataFrame, schema: FeatureSchema, threshold: float
) -> tuple[DriftResult, str]:
    """Run Evidently's data drift preset on the features; returns the result and the HTML report."""
    definition = DataDefinition(numerical_columns=list(schema.numeric), categorical_columns=list(schema.categorical))
    features = list(schema.features)
    try:
        snapshot = Report([DataDriftPreset(columns=features)], include_tests=True).run(
            Dataset.from_pandas(_for_evidently(current, schema), data_definition=definition),
            Dataset.from_pandas(_for_evidently(reference, schema), data_definition=definition),
        )
        summary = snapshot.dict()
        html = snapshot.get_html_str(as_iframe=False)
    except (ValueError, TypeError, KeyError, ZeroDivisionError) as exc:
        raise DriftDetectionError(
            f"Evidently could not compare the batch ({len(current)} rows) with the reference "
            f"({len(reference)} rows) on columns {features}: {exc}"
        ) from exc
    columns = tuple(_column_verdicts(summary))
    drifted = sum(c.drifted for c in columns)
    result = DriftResult(
        drifted_share=drifted / len(columns) if columns else 0.0,
        drifted_count=drifted,
        column_count=len(columns),
        threshold=threshold,
        reference_rows=len(reference),
        current_rows=len(current),
        columns=columns,
    )
    return result, html


def no_reference(current_rows: int, threshold: float) -> DriftResult:
    """The result when no model is deployed yet, so there is nothing to compare against."""
    return DriftResult(None, 0, 0, threshold, reference_rows=0, current_rows=current_rows)


def _for_evidently(frame: pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    """Plain object/float columns: Evidently's type checks do not know pandas' nullable string dtype."""
    out = frame[list(schema.features)].copy()
    for column in schema.categorical:
        out[column] = out[column].astype(object)
    return out


def _column_verdicts(summary: dict) -> list[ColumnDrift]:
    verdicts = []
    scores = {m["id"]: m["value"] for m in summary["metrics"]}
    for test in summary.get("tests", []):
        if test["id"] != DRIFT_TEST_ID:
            continue
        params = test["metric_config"]["params"]
        verdicts.append(
            ColumnDrift(
                column=str(params["column"]),
                method=str(params["method"]),
                score=float(scores[test["metric_config"]["metric_id"]]),
                threshold=float(params["threshold"]),
                drifted=test["status"] == "FAIL",
            )
        )
    return verdicts
