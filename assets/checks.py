"""Asset checks shown pass/fail in the UI: drift, a quality floor that blocks deployment, an energy budget."""

from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, MetadataValue, asset_check

from green_pipeline.assets.compression import compressed_model
from green_pipeline.assets.monitoring import drift_report
from green_pipeline.assets.partitions import batch_partitions
from green_pipeline.assets.reporting import energy_ledger
from green_pipeline.ledger import all_entries, totals
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


@asset_check(asset=energy_ledger, description="Flags runs that spent more than the energy budget per run.")
def energy_budget_per_run(context: AssetCheckExecutionContext, check_thresholds: CheckThresholds) -> AssetCheckResult:
    budget = check_thresholds.energy_budget_per_run_kwh
    runs = totals(all_entries(context.instance), by="run_id")
    over = [r for r in runs if r.energy_kwh > budget]
    listing = "\n".join(f"- `{r.key}`: {r.energy_kwh * 1e3:.4f} Wh" for r in over[:20]) or "none"
    return AssetCheckResult(
        passed=not over,
        severity=AssetCheckSeverity.WARN,
        metadata={"budget_kwh": budget, "runs_over_budget": len(over), "runs": MetadataValue.md(listing)},
    )
