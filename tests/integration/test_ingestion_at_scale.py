"""Reading, compacting and drift-testing a batch at scale, through real Dagster runs: only the model's columns
are decoded, the clean batch is stored compact, the drift report says how many rows it tested, and a batch too
big for memory is refused naming the setting."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, instance_for_test

from green_pipeline.app.definitions import defs
from green_pipeline.app.runner import BatchOutcome, process_batches, run_config
from green_pipeline.demo.stream import StreamSpec, generate_day, write_stream

pytestmark = pytest.mark.integration

STREAM = StreamSpec(days=2, rows_per_day=3000, covariate_shift_days=(), concept_drift_days=())


class Deployed:
    """A workspace whose first batch trained and deployed v0001, with one Dagster instance for every run."""

    def __init__(self, root: Path, instance: DagsterInstance) -> None:
        self.root = root
        self.instance = instance

    def config(self, dataset: dict | None = None, policy: dict | None = None) -> dict:
        return run_config(
            {
                "dataset": {"data_url": str(self.root / "data"), **(dataset or {})},
                "model_store": {"store_url": str(self.root / "store")},
                "artifacts": {"base_url": str(self.root / "artifacts")},
                "policy": policy or {},
            }
        )

    def run(self, name: str, config: dict) -> BatchOutcome:
        return next(process_batches(defs, self.instance, [name], config))

    def metadata(self, asset: str, partition: str) -> dict:
        records = self.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[partition]), limit=1
        ).records
        assert records, f"{asset} was never materialized for {partition}"
        return records[0].asset_materialization.metadata


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    root = tmp_path_factory.mktemp("scale")
    first = write_stream(STREAM, str(root / "data"))[0]
    with instance_for_test() as instance:
        workspace = Deployed(root, instance)
        assert workspace.run(first, workspace.config()).deployed_version == "v0001"
        yield workspace


def test_a_wide_batch_is_read_projected_stored_compact_and_drift_tested_on_a_sample(deployed: Deployed) -> None:
    name = "batch-2026-01-02-wide.parquet"
    wide = generate_day(STREAM, 1).assign(coupon_code="X1", note="free text")
    wide.to_parquet(deployed.root / "data" / name, index=False)

    outcome = deployed.run(name, deployed.config(policy={"drift_sample_rows": 2000}))

    assert outcome.success and not outcome.retrained
    ingested = deployed.metadata("ingested_batch", name)
    assert ingested["unread_columns"].value == ["coupon_code", "note"]
    assert ingested["columns"].value == len(wide.columns) - 2
    stored = pd.read_parquet(
        io.BytesIO(Path(deployed.metadata("validated_batch", name)["artifact_url"].value).read_bytes())
    )
    assert isinstance(stored["plan"].dtype, pd.CategoricalDtype)
    assert str(stored["age"].dtype) == "float32" and str(stored["monthly_charges"].dtype) == "float64"
    assert str(stored["churned"].dtype) == "int64"
    drift = deployed.metadata("drift_report", name)
    assert drift["drift_sampled"].value is True
    assert drift["drift_rows_tested_current"].value == drift["drift_rows_tested_reference"].value == 2000
    assert drift["current_rows"].value == 3000
    assert drift["drift_score_error_bound"].value > 0


def test_a_batch_too_big_for_memory_is_refused_naming_the_setting(deployed: Deployed) -> None:
    name = STREAM.batch_name(1)

    outcome = deployed.run(name, deployed.config(dataset={"max_memory_fraction": 1e-9}))

    assert not outcome.success and outcome.error is not None
    assert name in outcome.error and "dataset.max_memory_fraction" in outcome.error
