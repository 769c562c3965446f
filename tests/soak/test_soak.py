"""Soak: many small batches through the real pipeline on one persistent instance, as a long-lived worker would.

Excluded from the default run; ``make soak`` (``pytest -m soak``) runs it. It watches what grows without bound
in a process that keeps running: open file descriptors and resident memory (after a warm-up), disk written per
batch, and it checks the event log stays consistent with the model store after every batch has been processed.
"""

from __future__ import annotations

import gc
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import psutil
import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, DagsterRunStatus

from green_pipeline.app.definitions import defs
from green_pipeline.app.runner import process_batches, run_config
from green_pipeline.demo.stream import StreamSpec, write_stream
from green_pipeline.orchestration.ledger import materializations
from green_pipeline.store.model_store import ModelStore

pytestmark = pytest.mark.soak
REPO = Path(__file__).resolve().parents[2]
#: A covariate shift and a concept drift: a few batches retrain, most are judged and scored only.
STREAM = StreamSpec(days=52, rows_per_day=2500, covariate_shift_days=(18,), concept_drift_days=(36,))
WARM_UP = 10
#: Bounds after the warm-up, with room around the figures measured (docs/RELIABILITY.md, F10): 0 descriptors,
#: +32 MB RSS, 4.3 MB of disk per batch, 3.7 MB of it Evidently's HTML drift report.
MAX_FD_GROWTH = 8
MAX_RSS_GROWTH_MB = 100.0
MAX_DISK_PER_BATCH_MB = 6.0
#: Disk written per batch must not creep up: the last batches may write at most this much more than the first.
MAX_DISK_RATE_RATIO = 1.25
TIME_BUDGET_S = 540.0
MONITORING_ASSETS = ("ingested_batch", "validated_batch", "drift_report", "predictions")


@dataclass
class Samples:
    """What the process and its folders hold after each batch."""

    fds: list[int] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    disk_mb: list[float] = field(default_factory=list)

    def take(self, process: psutil.Process, folders: list[Path]) -> None:
        gc.collect()
        self.fds.append(process.num_fds())
        self.rss_mb.append(process.memory_info().rss / 2**20)
        self.disk_mb.append(sum(_du(folder) for folder in folders) / 2**20)

    def disk_per_batch(self) -> list[float]:
        return [b - a for a, b in pairwise(self.disk_mb[WARM_UP:])]

    def summary(self) -> str:
        per_batch, half = self.disk_per_batch(), len(self.rss_mb) // 2
        return (
            f"fds {self.fds[WARM_UP]} -> {self.fds[-1]} (max {max(self.fds[WARM_UP:])}); "
            f"rss {self.rss_mb[WARM_UP]:.0f} -> {self.rss_mb[half]:.0f} -> {self.rss_mb[-1]:.0f} MB "
            f"(warm-up, half, end); disk {self.disk_mb[-1]:.1f} MB, "
            f"{sum(per_batch) / len(per_batch):.2f} MB/batch after warm-up (max {max(per_batch):.2f})"
        )


def _du(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def test_fifty_batches_grow_no_handles_memory_or_disk_beyond_bounds_and_keep_the_log_consistent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    home = tmp_path / "dagster-home"
    home.mkdir()
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    batches = write_stream(STREAM, str(tmp_path / "data"))
    config = run_config(
        {
            "dataset": {"data_url": str(tmp_path / "data")},
            "model_store": {"store_url": str(tmp_path / "store")},
            "artifacts": {"base_url": str(tmp_path / "artifacts")},
        }
    )
    samples, process = Samples(), psutil.Process(os.getpid())
    with DagsterInstance.from_config(str(home)) as instance:
        for batch in batches:
            outcome = next(process_batches(defs, instance, [batch], config))
            assert outcome.success, f"{batch}: {outcome.error}"
            samples.take(process, [home, tmp_path / "store", tmp_path / "artifacts"])
            assert time.monotonic() - started < TIME_BUDGET_S, f"over the time budget after {batch}"
        versions = _assert_consistent(instance, batches, ModelStore(str(tmp_path / "store")))
    with capsys.disabled():
        elapsed = time.monotonic() - started
        print(f"\nsoak: {len(batches)} batches, {versions} versions, {elapsed:.0f} s; {samples.summary()}")

    assert max(samples.fds[WARM_UP:]) - samples.fds[WARM_UP] <= MAX_FD_GROWTH, samples.fds
    assert max(samples.rss_mb[WARM_UP:]) - samples.rss_mb[WARM_UP] <= MAX_RSS_GROWTH_MB, samples.rss_mb
    growth = samples.disk_per_batch()
    assert max(growth) <= MAX_DISK_PER_BATCH_MB, growth
    assert sum(growth[-10:]) <= MAX_DISK_RATE_RATIO * sum(growth[:10]), growth


def _assert_consistent(instance: DagsterInstance, batches: list[str], store: ModelStore) -> int:
    """Every run succeeded; each monitoring asset materialized once per batch; energy stated everywhere;
    the store holds exactly the versions the deployments reported. Returns the number of versions."""
    runs = instance.get_runs()
    assert len(runs) == len(batches) and {r.status for r in runs} == {DagsterRunStatus.SUCCESS}
    for asset in MONITORING_ASSETS:
        records = instance.fetch_materializations(AssetRecordsFilter(asset_key=AssetKey(asset)), limit=1000).records
        # The first batch is scored by nobody: no model serves yet, so predictions skips it.
        expected = batches[1:] if asset == "predictions" else batches
        assert Counter(r.partition_key for r in records) == Counter(expected), asset
    events = list(materializations(instance))
    assert all("energy_status" in e.asset_materialization.metadata for e in events)
    deployments = [
        e.asset_materialization for e in events if e.asset_materialization.asset_key.path == ["deployed_model"]
    ]
    assert len(deployments) >= 3  # the first model, then at least one retrain per drift
    assert sorted(d.metadata["version"].value for d in deployments) == store.versions()
    promoted = [d.metadata["version"].value for d in deployments if d.metadata["promoted"].value]
    assert store.current_version() == max(promoted) and store.load().version == store.current_version()
    return len(deployments)
