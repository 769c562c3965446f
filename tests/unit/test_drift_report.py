"""The HTML drift report is rendered only when someone will read it; the metadata never depends on it."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest

from green_pipeline.assets.monitoring import drift_metadata
from green_pipeline.demo.stream import StreamSpec
from green_pipeline.drift.assessment import MonitoringThresholds, assess_batch, batch_report, report_wanted
from green_pipeline.drift.detection import ColumnDrift, DriftResult, DriftSample
from green_pipeline.drift.sampling import DriftSettings, HtmlReport
from green_pipeline.errors import InvalidConfigError
from green_pipeline.store.model_store import DeployedModel
from green_pipeline.training.policy import Outcome, RetrainDecision, Strategy, Trigger

THRESHOLDS = MonitoringThresholds(drift_share=0.3, quality_drop_auc=0.08)
#: Another day of the champion's regime (kept serving), and a day after the concept drift (its AUC drops).
SAME_REGIME_DAY = 7
CONCEPT_DRIFT_DAY = 12
#: What a skipped batch's drift step must still tell: figures, thresholds, sampling bounds, top columns.
SKIPPED_BATCH_METADATA = {
    "retrain_required",
    "drifted_share",
    "weighted_drifted_share",
    "drift_share_threshold",
    "champion_auc",
    "champion_auc_lower",
    "drift_score_error_bound",
    "drift_cdf_error_bound",
    "drift_decision_certain",
    "drift_columns_near_threshold",
    "drift_report_columns",
    "top_drifted_columns",
}


def test_a_certain_decision_to_keep_serving_renders_no_html_and_keeps_its_metadata(
    stream_spec: StreamSpec, make_clean_batch: Callable[[int], pd.DataFrame], deployed_shifted_model: DeployedModel
) -> None:
    name = stream_spec.batch_name(SAME_REGIME_DAY)

    assessment, html = assess_batch(name, make_clean_batch(SAME_REGIME_DAY), deployed_shifted_model, THRESHOLDS)

    assert not assessment.decision.retrain and assessment.drift.decision_certain
    assert html is None and assessment.report_url is None
    metadata = drift_metadata(assessment, THRESHOLDS)
    assert metadata.keys() >= SKIPPED_BATCH_METADATA
    assert metadata["drift_report_rendered"] is False and "report_path" not in metadata
    assert metadata["drift_report_columns"] == len(assessment.drift.columns)


def test_an_opened_gate_renders_the_report_and_always_renders_every_batch(
    stream_spec: StreamSpec, make_clean_batch: Callable[[int], pd.DataFrame], deployed_shifted_model: DeployedModel
) -> None:
    drifted, kept = make_clean_batch(CONCEPT_DRIFT_DAY), make_clean_batch(SAME_REGIME_DAY)
    always = DriftSettings(report_html=HtmlReport.ALWAYS)

    retrain, html = assess_batch(stream_spec.batch_name(CONCEPT_DRIFT_DAY), drifted, deployed_shifted_model, THRESHOLDS)
    _, kept_html = assess_batch(
        stream_spec.batch_name(SAME_REGIME_DAY), kept, deployed_shifted_model, THRESHOLDS, always
    )

    assert retrain.decision.retrain and retrain.decision.trigger is Trigger.QUALITY_DROP
    assert html is not None and "<html" in html.lower()
    assert kept_html is not None and "<html" in kept_html.lower()


def test_a_report_on_demand_details_the_columns_the_drift_step_saw(
    make_clean_batch: Callable[[int], pd.DataFrame], deployed_shifted_model: DeployedModel
) -> None:
    settings = DriftSettings(report_columns=2)
    assessment, _ = assess_batch("b", make_clean_batch(SAME_REGIME_DAY), deployed_shifted_model, THRESHOLDS, settings)
    assert assessment.drift.sample is not None

    html = batch_report(make_clean_batch(SAME_REGIME_DAY), deployed_shifted_model, THRESHOLDS, settings)

    for column in deployed_shifted_model.schema.features:
        shown = column in assessment.drift.sample.report_columns
        assert (f'Value Drift for column {column}"' in html) is shown, column


def _drift(near_threshold: bool) -> DriftResult:
    """One of two columns drifted; the other's sampled score is within its error bound of the threshold or not."""
    close = ColumnDrift("b", "Wasserstein distance (normed)", 0.09, 0.1, False, 0.02 if near_threshold else 0.001)
    columns = (ColumnDrift("a", "Wasserstein distance (normed)", 0.5, 0.1, True, 0.001), close)
    sample = DriftSample(True, 50_000, 50_000, 0, 0.99, 0.01, True, ("a", "b"))
    return DriftResult(0.5, 1, 2, 0.6, 100_000, 100_000, columns, sample)


KEEP = RetrainDecision(False, None, "drifted share below threshold")
DRIFT_RETRAIN = RetrainDecision(True, Strategy.WARM_START, "drift", Outcome.RETRAIN, Trigger.DRIFT)
FORCED = RetrainDecision(True, Strategy.FULL, "always_retrain", Outcome.RETRAIN, Trigger.ALWAYS_RETRAIN)


@pytest.mark.parametrize(
    ("mode", "decision", "uncertain", "rendered"),
    [
        (HtmlReport.WHEN_NEEDED, KEEP, False, False),
        (HtmlReport.WHEN_NEEDED, KEEP, True, True),
        (HtmlReport.WHEN_NEEDED, DRIFT_RETRAIN, False, True),
        (HtmlReport.WHEN_NEEDED, FORCED, False, False),
        (HtmlReport.ALWAYS, KEEP, False, True),
        (HtmlReport.NEVER, DRIFT_RETRAIN, True, False),
    ],
)
def test_the_report_is_wanted_for_a_retrain_on_evidence_or_an_uncertain_decision(
    mode: HtmlReport, decision: RetrainDecision, uncertain: bool, rendered: bool
) -> None:
    drift = _drift(near_threshold=uncertain)
    assert drift.decision_certain is not uncertain

    assert report_wanted(mode, decision, drift) is rendered


def test_an_unknown_report_mode_is_refused_by_its_setting_name() -> None:
    with pytest.raises(InvalidConfigError, match=r"policy\.drift_report_html='sometimes'"):
        DriftSettings(report_html="sometimes")  # type: ignore[arg-type]
