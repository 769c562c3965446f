"""Energy as a KPI on real runs: quality per kWh on each version, energy budgets that warn or block, the
ledger's quality column, and every training logged to a local MLflow tracking store.

One module-scoped stream of four batches: a first training (large budget: the checks pass), a retrain
blocked by the monthly budget, a retrain warned about by it, and a retrain blocked by the per-run budget.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetKey, AssetMaterialization, DagsterEventType, DagsterInstance, instance_for_test
from mlflow import MlflowClient

from green_pipeline.app.cli import main
from green_pipeline.app.definitions import defs
from green_pipeline.app.runner import BatchOutcome, process_batches, run_config
from green_pipeline.demo.stream import StreamSpec, write_stream
from green_pipeline.energy.budget import Budget, BudgetSettings, BudgetSeverity
from green_pipeline.energy.measurement import EnergySettings, EnergyStatus, measure_energy
from green_pipeline.orchestration.ledger import retraining_budget_block
from green_pipeline.store.model_store import ModelStore

pytestmark = pytest.mark.integration

STREAM = StreamSpec(days=4, rows_per_day=3000, covariate_shift_days=(2,), concept_drift_days=())
TINY_KWH, LARGE_KWH = 1e-9, 1000.0
EXPERIMENT = "kpi-test"


@dataclass(frozen=True)
class Processed:
    root: Path
    instance: DagsterInstance
    outcomes: list[BatchOutcome]

    @property
    def store(self) -> ModelStore:
        return ModelStore(str(self.root / "store"))


def _config(root: Path, policy: dict[str, Any], thresholds: dict[str, Any]) -> dict[str, Any]:
    return run_config(
        {
            "dataset": {"data_url": str(root / "data")},
            "model_store": {"store_url": str(root / "store")},
            "artifacts": {"base_url": str(root / "artifacts")},
            "policy": policy,
            "check_thresholds": thresholds,
            # Through the environment, as a deployment would set it (Dagster resolves it at run time).
            "mlflow_tracking": {"tracking_uri": {"env": "MLFLOW_TRACKING_URI"}, "experiment_name": EXPERIMENT},
        }
    )


#: Per batch: retrain policy and budgets. Batches 1 and 3 force a retrain, so only a budget can stop it.
SCENARIOS = (
    ({}, {"energy_budget_per_month_kwh": LARGE_KWH, "energy_budget_per_month_severity": "block"}),
    (
        {"always_retrain": True},
        {"energy_budget_per_month_kwh": TINY_KWH, "energy_budget_per_month_severity": "block"},
    ),
    ({}, {"energy_budget_per_month_kwh": TINY_KWH, "energy_budget_per_month_severity": "warn"}),
    (
        {"always_retrain": True},
        {"energy_budget_per_run_kwh": TINY_KWH, "energy_budget_per_run_severity": "block"},
    ),
)


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Processed]:
    root = tmp_path_factory.mktemp("kpi")
    batches = write_stream(STREAM, str(root / "data"))
    with pytest.MonkeyPatch.context() as patch, instance_for_test() as instance:
        patch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow's opt-in for its local file store
        patch.setenv("MLFLOW_TRACKING_URI", (root / "mlruns").as_uri())
        outcomes = []
        for batch, (policy, thresholds) in zip(batches, SCENARIOS, strict=True):
            outcomes += process_batches(defs, instance, [batch], _config(root, policy, thresholds))
        yield Processed(root, instance, outcomes)


def _checks(instance: DagsterInstance, run_id: str) -> dict[str, Any]:
    events = instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    return {e.dagster_event.event_specific_data.check_name: e.dagster_event.event_specific_data for e in events}


def _metadata(instance: DagsterInstance, run_id: str, asset: str) -> dict[str, Any] | None:
    for event in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
        if event.asset_materialization.asset_key == AssetKey(asset):
            return {k: v.value for k, v in event.asset_materialization.metadata.items()}
    return None


def test_every_version_records_quality_per_kwh_and_energy_per_1k_predictions(processed: Processed) -> None:
    store, instance = processed.store, processed.instance
    assert store.versions() == ["v0001", "v0002"]
    for version, outcome in zip(store.versions(), (processed.outcomes[0], processed.outcomes[2]), strict=True):
        metrics = store.metadata(version)["metrics"]
        deployed = _metadata(instance, outcome.run_id, "deployed_model")
        spent = sum(
            _metadata(instance, outcome.run_id, a)["energy_kwh"] for a in ("retrained_model", "compressed_model")
        )
        baseline = 0.5 if version == "v0001" else metrics["champion_auc"]
        assert metrics["production_energy_kwh"] == pytest.approx(spent)
        assert metrics["quality_per_kwh"] == pytest.approx((metrics["test_auc"] - baseline) / spent)
        assert metrics["energy_per_1k_predictions_kwh"] > 0
        assert deployed["quality_per_kwh"] == pytest.approx(metrics["quality_per_kwh"])
        assert deployed["quality_per_kwh_status"] == "estimated"
        assert deployed["energy_per_1k_predictions_kwh"] == metrics["energy_per_1k_predictions_kwh"]
    assert "random guessing" in store.metadata("v0001")["metrics"]["auc_gain_baseline"]
    assert store.metadata("v0002")["metrics"]["auc_gain_baseline"] == "champion v0001 on the same test rows"


def test_a_large_monthly_budget_passes(processed: Processed) -> None:
    check = _checks(processed.instance, processed.outcomes[0].run_id)["energy_budget_per_month"]
    assert check.passed
    assert 0 < check.metadata["spent_kwh"].value < LARGE_KWH


def test_an_exhausted_blocking_monthly_budget_skips_retraining_but_not_monitoring(processed: Processed) -> None:
    outcome, instance = processed.outcomes[1], processed.instance
    check = _checks(instance, outcome.run_id)["energy_budget_per_month"]
    assert not check.passed and check.severity.value == "ERROR"
    assert check.metadata["budget_kwh"].value == TINY_KWH and check.metadata["spent_kwh"].value > TINY_KWH
    assert check.metadata["effect"].value == "retraining skipped while over budget"
    drift = _metadata(instance, outcome.run_id, "drift_report")
    assert outcome.success and drift["retrain_required"] is True
    assert drift["energy_status"] == "estimated"  # the month was spent on estimates alone (no RAPL here)
    assert _metadata(instance, outcome.run_id, "retrained_model") is None
    assert _metadata(instance, outcome.run_id, "predictions")["rows_scored"] > 0  # scoring went on
    assert outcome.deployed_version is None and outcome.serving_version == "v0001"


def test_a_blocking_monthly_budget_blocks_retraining_on_estimated_figures() -> None:
    """An estimate is energy spent: a month over its blocking budget on estimates alone stops the next retraining."""
    with measure_energy(EnergySettings(country_iso_code="FRA")) as step:
        sum(i * i for i in range(300_000))
    report = step.report
    assert report.status == EnergyStatus.ESTIMATED and report.energy_kwh > 0  # no RAPL on this kind of machine
    with instance_for_test() as instance:
        instance.report_runless_asset_event(AssetMaterialization("drift_report", metadata=report.as_metadata()))
        (record,) = instance.fetch_materializations(AssetKey("drift_report"), limit=1).records
        now = datetime.fromtimestamp(record.timestamp, UTC)  # the month the step was recorded in
        over = BudgetSettings(
            per_run=Budget(LARGE_KWH, BudgetSeverity.WARN),
            per_month=Budget(report.energy_kwh / 2, BudgetSeverity.BLOCK),
        )
        reason = retraining_budget_block(instance, "a-new-run", over, now)
        assert reason is not None and reason.startswith(f"month {now:%Y-%m} (UTC): ") and "over the budget" in reason
        assert "unmeasured" not in reason  # the estimate was counted, not set aside
        within = dataclasses.replace(over, per_month=Budget(report.energy_kwh * 2, BudgetSeverity.BLOCK))
        assert retraining_budget_block(instance, "a-new-run", within, now) is None


def test_an_exhausted_warning_monthly_budget_lets_the_run_retrain(processed: Processed) -> None:
    outcome = processed.outcomes[2]
    check = _checks(processed.instance, outcome.run_id)["energy_budget_per_month"]
    assert not check.passed and check.severity.value == "WARN"
    assert check.metadata["effect"].value == "warning only (severity warn)"
    assert outcome.retrained and outcome.deployed_version == "v0002"


def test_a_blocking_run_budget_skips_a_retraining_the_run_cannot_afford(processed: Processed) -> None:
    outcome, instance = processed.outcomes[3], processed.instance
    assert outcome.success and not outcome.retrained and outcome.deployed_version is None
    assert _metadata(instance, outcome.run_id, "predictions") is not None
    assert processed.store.current_version() == "v0002" and processed.store.versions() == ["v0001", "v0002"]
    ledger = defs.resolve_job_def("energy_ledger_job").execute_in_process(
        instance=instance,
        run_config=run_config({"check_thresholds": SCENARIOS[3][1], "artifacts": {"base_url": str(processed.root)}}),
    )
    check = _checks(instance, ledger.run_id)["energy_budget_per_run"]
    assert not check.passed and check.severity.value == "ERROR" and check.metadata["severity"].value == "block"


def test_ledger_shows_quality_next_to_energy(processed: Processed, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ledger", "--json"]) == 0
    rows = {row["batch"]: row for row in json.loads(capsys.readouterr().out)["by_batch"]}
    first, blocked, warned, _ = (rows[o.batch] for o in processed.outcomes)
    assert first["deployed_version"] == "v0001" and first["deployed_auc"] > 0.5 and first["quality_per_kwh"] > 0
    assert blocked["action"] == "skipped" and blocked["served_version"] == "v0001" and blocked["served_auc"] > 0.5
    assert blocked["deployed_version"] is None and blocked["energy_kwh"] > 0
    metrics = processed.store.metadata("v0002")["metrics"]
    assert warned["deployed_auc"] == metrics["test_auc"] and warned["quality_per_kwh"] == metrics["quality_per_kwh"]
    assert warned["run_id"] == processed.outcomes[2].run_id
    assert main(["ledger"]) == 0
    table = capsys.readouterr().out
    assert "AUC gain/kWh" in table and f"{metrics['quality_per_kwh']:.1f}" in table
    assert main(["models", "--store", str(processed.root / "store")]) == 0
    assert f"{metrics['quality_per_kwh']:.1f}" in capsys.readouterr().out


def test_each_training_is_logged_to_mlflow_with_its_energy(processed: Processed) -> None:
    client = MlflowClient((processed.root / "mlruns").as_uri())
    runs = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    by_version = {run.data.tags.get("model_version"): run for run in runs}
    assert set(by_version) == {"v0001", "v0002"}  # the two blocked retrains logged nothing
    for version, outcome in (("v0001", processed.outcomes[0]), ("v0002", processed.outcomes[2])):
        run, instance = by_version[version], processed.instance
        trained = _metadata(instance, outcome.run_id, "retrained_model")
        deployed = _metadata(instance, outcome.run_id, "deployed_model")
        params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
        assert trained["mlflow_run_id"] == deployed["mlflow_run_id"] == run.info.run_id
        assert tags["dagster_run_id"] == outcome.run_id and tags["batch"] == outcome.batch
        assert params["strategy"] == trained["strategy"] and params["batch"] == outcome.batch
        assert params["learning_rate"] == "0.05" and params["trees"] == str(trained["trees"])
        assert params["parent_version"] == ("none" if version == "v0001" else "v0001")
        assert metrics["valid_auc"] == pytest.approx(trained["valid_auc"])
        assert metrics["test_auc"] == pytest.approx(deployed["test_auc"])
        assert metrics["quality_per_kwh"] == pytest.approx(deployed["quality_per_kwh"])
        attempts = [s.strip() for s in params["strategies_tried"].split(",")]
        assert metrics["energy_kwh"] == pytest.approx(sum(trained[f"attempt_{s}_energy_kwh"] for s in attempts))
        assert metrics["emissions_kg_co2eq"] == pytest.approx(
            sum(metrics[f"attempt_{s}_emissions_kg_co2eq"] for s in attempts)
        )
        assert metrics["energy_kwh"] > 0 and metrics["emissions_kg_co2eq"] > 0
        assert tags["energy_status"] == "estimated"  # no RAPL counters on this kind of machine


def test_the_default_install_never_imports_mlflow() -> None:
    probe = "import sys, green_pipeline.app.definitions; print('mlflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr
