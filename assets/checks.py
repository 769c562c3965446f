"""Asset checks shown pass/fail in the UI: drift, a quality floor that blocks deployment, energy budgets."""

from datetime import UTC, datetime

from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, MetadataValue, asset_check

from green_pipeline.assets.compression import compressed_model
from green_pipeline.assets.monitoring import drift_report
from green_pipeline.assets.partitions import batch_partitions
from green_pipeline.assets.reporting import energy_ledger
from green_pipeline.budget import BudgetSeverity, BudgetStatus
from green_pipeline.ledger import all_entries, month_budget_status, totals
from green_pipeline.records import CompressedModel, DriftAssessment
from green_pipeline.resources import CheckThresholds


@asset_check(
    asset=drift_report,
    partitions_def=batch_partitions,
    description="Warns when the drifted share of features reaches the threshold.",
)
def drift_below_threshold(drift_report: DriftAssessment) -> AssetCheckResult:
    drift = drift_report.drift
    share = drift.drifted_share
    return AssetCheckResult(
        passed=not drift.passes_threshold,
        severity=AssetCheckSeverity.WARN,
        metadata={"drifted_share": share if share is not None else "no reference yet", "threshold": drift.threshold},
    )


@asset_check(
    asset=compressed_model,
    partitions_def=batch_partitions,
    blocking=True,
    description="A model under the quality floor is never deployed.",
)
def quality_floor(compressed_model: CompressedModel, check_thresholds: CheckThresholds) -> AssetCheckResult:
    return AssetCheckResult(
        passed=compressed_model.test_auc >= check_thresholds.quality_floor_auc,
        severity=AssetCheckSeverity.ERROR,
        metadata={"test_auc": compressed_model.test_auc, "quality_floor_auc": check_thresholds.quality_floor_auc},
    )


#: An exceeded ``block`` budget shows as an error; the skipping itself happens in retrained_model (see below).
SEVERITIES = {BudgetSeverity.WARN: AssetCheckSeverity.WARN, BudgetSeverity.BLOCK: AssetCheckSeverity.ERROR}


@asset_check(asset=energy_ledger, description="Flags runs that spent more than the energy budget per run.")
def energy_budget_per_run(context: AssetCheckExecutionContext, check_thresholds: CheckThresholds) -> AssetCheckResult:
    budget = check_thresholds.budgets().per_run
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
    asset=drift_report,
    partitions_def=batch_partitions,
    description="Fails when this UTC month's measured energy exceeds the monthly budget; with severity block, "
    "retraining is skipped until the month ends while monitoring and scoring go on.",
)
def energy_budget_per_month(context: AssetCheckExecutionContext, check_thresholds: CheckThresholds) -> AssetCheckResult:
    """Not a Dagster blocking check on purpose: that would also stop scoring and fail the run (and monitoring_job).

    retrained_model evaluates the same budget (green_pipeline.ledger.retraining_budget_block) before training.
    """
    status = month_budget_status(context.instance, check_thresholds.budgets().per_month, datetime.now(UTC))
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
