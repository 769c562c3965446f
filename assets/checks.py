"""Asset checks shown pass/fail in the UI: drift, the quality floor, energy budgets.

None is a Dagster blocking check: the gates themselves are decisions of the assets (deployed_model rejects a
model surely under the floor, retrained_model skips retraining over a blocking budget); the checks show the same
limits, by the same rules.
"""

from datetime import UTC, datetime
from typing import TypeVar

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)

from green_pipeline.energy.budget import BudgetSeverity, BudgetStatus
from green_pipeline.orchestration.ledger import (
    all_entries,
    latest_metadata,
    month_budget_status,
    run_materializations,
    totals,
)
from green_pipeline.orchestration.metadata import (
    DRIFT_REPORT,
    ENERGY_LEDGER,
    MODEL_EVALUATION,
    DriftDecision,
    EvaluationRecord,
    MetadataRecord,
)
from green_pipeline.orchestration.resources import CheckThresholds
from green_pipeline.training.promotion import reaches_floor

R = TypeVar("R", bound=MetadataRecord)


@asset_check(asset=DRIFT_REPORT, description="Warns when the drifted share of features reaches the threshold.")
def drift_below_threshold(context: AssetCheckExecutionContext) -> AssetCheckResult:
    drift = _this_run(context, DriftDecision)
    share, threshold = drift.drifted_share, drift.drift_threshold
    return AssetCheckResult(
        passed=share is None or share < threshold,
        severity=AssetCheckSeverity.WARN,
        metadata={"drifted_share": share if share is not None else "no reference yet", "threshold": threshold},
    )


@asset_check(
    asset=MODEL_EVALUATION,
    description="Fails when the challenger's AUC is under the quality floor even at its upper bound; deployed_model "
    "then rejects it.",
)
def quality_floor(context: AssetCheckExecutionContext, check_thresholds: CheckThresholds) -> AssetCheckResult:
    """Visibility only: the gate is training.promotion.decide_promotion, so a rejection is an outcome, not a failure.

    It applies the gate's own rule (``reaches_floor``) to the interval model_evaluation measured. A blocking check
    would log "emitted no result" on every batch whose model_evaluation is skipped.
    """
    evaluation = _this_run(context, EvaluationRecord)
    return AssetCheckResult(
        passed=reaches_floor(evaluation.challenger(), check_thresholds.quality_floor_auc),
        severity=AssetCheckSeverity.WARN,
        metadata={
            "test_auc": evaluation.challenger_auc,
            "test_auc_upper": evaluation.challenger_auc_upper,
            "confidence": evaluation.confidence,
            "quality_floor_auc": check_thresholds.quality_floor_auc,
        },
    )


def _this_run(context: AssetCheckExecutionContext, record: type[R]) -> R:
    """The record its asset was materialized with in the check's own run.

    The checks read the event log rather than load the asset's value: a check declared per partition is a Dagster
    preview feature that warns on every load, and a check without partitions would load every partition's value.
    A check runs only after its asset materialized in the run; a skipped asset skips its checks.
    """
    found = record.from_steps(latest_metadata(run_materializations(context.instance, context.run.run_id)))
    assert found is not None, "a check runs only after its asset materialized in the run"
    return found


#: An exceeded ``block`` budget shows as an error; the skipping itself happens in retrained_model (see below).
SEVERITIES = {BudgetSeverity.WARN: AssetCheckSeverity.WARN, BudgetSeverity.BLOCK: AssetCheckSeverity.ERROR}


@asset_check(asset=ENERGY_LEDGER, description="Flags runs that spent more than the energy budget per run.")
def energy_budget_per_run(context: AssetCheckExecutionContext, check_thresholds: CheckThresholds) -> AssetCheckResult:
    budget = check_thresholds.to_settings().per_run
    runs = totals(all_entries(context.instance), by="run_id")
    over = [r for r in runs if r.energy_kwh > budget.limit_kwh]
    listing = "\n".join(f"- `{r.key}`: {r.energy_kwh * 1e3:.4f} Wh" for r in over[:20]) or "none"
    return AssetCheckResult(
        passed=not over,
        severity=SEVERITIES[budget.severity],
        metadata={
            "budget_kwh": budget.limit_kwh,
            "severity": budget.severity.value,
            "runs_over_budget": len(over),
            "runs": MetadataValue.md(listing),
        },
    )


@asset_check(
    asset=DRIFT_REPORT,
    description="Fails when this UTC month's measured energy exceeds the monthly budget; with severity block, "
    "retraining is skipped until the month ends while monitoring and scoring go on.",
)
def energy_budget_per_month(context: AssetCheckExecutionContext, check_thresholds: CheckThresholds) -> AssetCheckResult:
    """Not a Dagster blocking check on purpose: that would also stop scoring and fail the run (and monitoring_job).

    retrained_model evaluates the same budget (orchestration.ledger.retraining_budget_block) before training.
    """
    status = month_budget_status(context.instance, check_thresholds.to_settings().per_month, datetime.now(UTC))
    return AssetCheckResult(
        passed=not status.exceeded,
        severity=SEVERITIES[status.budget.severity],
        description=status.describe(),
        metadata=_budget_metadata(status),
    )


def _budget_metadata(status: BudgetStatus) -> dict[str, object]:
    if not status.exceeded:
        effect = "none: within budget"
    elif status.blocks_retraining:
        effect = "retraining skipped while over budget"
    else:
        effect = "warning only (severity warn)"
    return {
        "period": status.scope,
        "spent_kwh": status.spent_kwh,
        "budget_kwh": status.budget.limit_kwh,
        "unmeasured_steps": status.unmeasured_steps,
        "severity": status.budget.severity.value,
        "effect": effect,
    }
