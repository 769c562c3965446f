"""The pipeline on a local Dask cluster of two worker processes: every step runs, and is measured, on a worker."""

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import s3fs
from dagster import DagsterEventType, DagsterInstance, build_reconstructable_job, execute_job, instance_for_test
from distributed import Client, LocalCluster, get_task_stream
from moto.server import ThreadedMotoServer

from green_pipeline.assets.dask_executor import local_cluster
from green_pipeline.assets.engines import engine_executor
from green_pipeline.data import StreamSpec, write_stream
from green_pipeline.definitions import defs
from green_pipeline.errors import InvalidConfigError
from green_pipeline.ledger import run_materializations
from green_pipeline.runner import BatchOutcome, process_batches, run_config
from green_pipeline.store import ModelStore

pytestmark = pytest.mark.integration

#: A first training, a quiet batch (retraining skipped), a covariate shift (warm start).
STREAM = StreamSpec(days=3, rows_per_day=2000, covariate_shift_day=2, concept_drift_day=None)
QUIET_BATCH_SKIPPED = {"model_evaluation", "compressed_model", "compressed_model_quality_floor", "deployed_model"}
BUCKET = "green-pipeline-dask"

#: What the code server, daemon and CLI do with GREEN_PIPELINE_EXECUTOR=dask: load the jobs on the dask engine,
#: and resolve the cluster of a run launched without run config (a sensor's) from $DASK_SCHEDULER_ADDRESS.
LOAD_WITH_DASK = """
import json
from dagster import validate_run_config
from green_pipeline.definitions import defs
job = defs.resolve_job_def("green_pipeline_job")
print(json.dumps([job.executor_def.name, validate_run_config(job, {})["execution"]["dask"]]))
"""


@dataclass(frozen=True)
class DaskRuns:
    root: Path
    instance: DagsterInstance
    outcomes: list[BatchOutcome]
    worker_pids: set[int]
    tasks: list[dict]


def _on_cluster(config: dict, cluster: LocalCluster) -> dict:
    return {**config, "execution": {"config": {"cluster": {"existing": {"address": cluster.scheduler_address}}}}}


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    # distributed.LocalCluster, started with the default SIGTERM so workers do not inherit an ignored one.
    with local_cluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
    ) as started:
        yield started


@pytest.fixture(scope="module")
def dask_runs(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskRuns]:
    root = tmp_path_factory.mktemp("dask")
    batches = write_stream(STREAM, str(root / "data"))
    config = run_config(
        {
            "dataset": {"data_url": str(root / "data")},
            "model_store": {"store_url": str(root / "store")},
            "artifacts": {"base_url": str(root / "artifacts")},
        }
    )
    # dagster.yaml's pools: steps in a pool (retrained_model: "training") must claim a slot, one at a time.
    pools = {"concurrency": {"pools": {"default_limit": 1, "granularity": "op"}}}
    with instance_for_test(overrides=pools) as instance, Client(cluster) as client:
        with get_task_stream(client) as stream:
            outcomes = list(process_batches(defs, instance, batches, _on_cluster(config, cluster), engine="dask"))
        worker_pids = set(client.run(os.getpid).values())
        yield DaskRuns(root, instance, outcomes, worker_pids, stream.data)


def test_the_batches_train_skip_and_warm_start_as_in_process(dask_runs: DaskRuns) -> None:
    outcomes = dask_runs.outcomes
    assert [o.success for o in outcomes] == [True, True, True], [o.error for o in outcomes]
    assert [o.strategy for o in outcomes] == ["full_retrain", None, "warm_start"]
    assert [o.deployed_version for o in outcomes] == ["v0001", None, "v0002"]
    skipped = {
        e.step_key for e in dask_runs.instance.all_logs(outcomes[1].run_id, of_type=DagsterEventType.STEP_SKIPPED)
    }
    assert skipped == QUIET_BATCH_SKIPPED
    store = ModelStore(str(dask_runs.root / "store"))
    assert store.versions() == ["v0001", "v0002"] and store.current_version() == "v0002"
    assert store.load().metadata["lineage"]["parent_version"] == "v0001"


def test_every_step_ran_in_a_worker_process_as_a_task_of_its_run(dask_runs: DaskRuns) -> None:
    assert len(dask_runs.worker_pids) == 2 and os.getpid() not in dask_runs.worker_pids
    workers = {task["worker"] for task in dask_runs.tasks}
    # Task keys are job.step.run_id.attempt.
    keys = [task["key"].split(".") for task in dask_runs.tasks]
    for outcome in dask_runs.outcomes:
        starts = dask_runs.instance.all_logs(outcome.run_id, of_type=DagsterEventType.STEP_START)
        assert starts and {e.dagster_event.pid for e in starts} <= dask_runs.worker_pids
        assert {step for _, step, run_id, _ in keys if run_id == outcome.run_id} == {e.step_key for e in starts}
    assert workers and all(worker.startswith("tcp://127.0.0.1:") for worker in workers)


def test_the_training_step_claimed_its_pool_slot_and_freed_it(dask_runs: DaskRuns) -> None:
    pool = dask_runs.instance.event_log_storage.get_concurrency_info("training")
    assert pool.slot_count == 1 and pool.claimed_slots == [] and pool.pending_steps == []


def test_each_materialization_is_logged_once_with_the_energy_its_worker_measured(dask_runs: DaskRuns) -> None:
    for outcome in dask_runs.outcomes:
        events = run_materializations(dask_runs.instance, outcome.run_id)
        keys = [e.asset_materialization.asset_key.to_user_string() for e in events]
        assert keys and len(keys) == len(set(keys)), keys
        for event in events:
            metadata = event.asset_materialization.metadata
            assert metadata["energy_status"].value == "measured", metadata.get("energy_unmeasured_reason")
            assert metadata["energy_kwh"].value > 0 and metadata["country_iso_code"].value == "FRA"
            assert event.dagster_event.pid in dask_runs.worker_pids
        assert outcome.unmeasured_steps == 0 and outcome.energy_kwh > 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_workers_read_batches_and_write_the_store_and_artifacts_on_s3(cluster: LocalCluster, tmp_path: Path) -> None:
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        storage = {"endpoint_url": endpoint, "region_name": "eu-west-1", "access_key_id": "k", "secret_access_key": "s"}
        options = {"key": "k", "secret": "s", "client_kwargs": {"endpoint_url": endpoint, "region_name": "eu-west-1"}}
        s3fs.S3FileSystem(**options).mkdir(BUCKET)
        batches = write_stream(StreamSpec(days=1, rows_per_day=1000), f"s3://{BUCKET}/incoming", options)
        config = run_config(
            {
                "object_storage": storage,
                "dataset": {"data_url": f"s3://{BUCKET}/incoming"},
                "model_store": {"store_url": f"s3://{BUCKET}/models"},
                "artifacts": {"base_url": f"s3://{BUCKET}/artifacts"},
            }
        )
        with instance_for_test() as instance:
            (outcome,) = process_batches(defs, instance, batches, _on_cluster(config, cluster), engine="dask")
        assert outcome.success, outcome.error
        assert outcome.deployed_version == "v0001" and outcome.unmeasured_steps == 0
        fs = s3fs.S3FileSystem(**options)
        assert fs.exists(f"{BUCKET}/artifacts/validated_batch/{batches[0]}.parquet")
        assert ModelStore(f"s3://{BUCKET}/models", storage_options=options).current_version() == "v0001"
    finally:
        server.stop()


def test_a_step_retried_by_its_policy_runs_again_on_the_cluster(cluster: LocalCluster, tmp_path: Path) -> None:
    job = build_reconstructable_job(
        "dask_flaky_job", "flaky_job", reconstructor_working_directory=str(Path(__file__).parent)
    )
    config = _on_cluster({"ops": {"flaky": {"config": {"marker": str(tmp_path / "attempted")}}}}, cluster)
    with instance_for_test() as instance, execute_job(job, instance, run_config=config) as result:
        assert result.success
        flaky_steps = [e.event_type_value for e in result.all_events if e.step_key == "flaky" and e.is_step_event]
        assert flaky_steps.count("STEP_UP_FOR_RETRY") == 1 and "STEP_RESTARTED" in flaky_steps
        assert any(e.step_key == "downstream" and e.is_step_success for e in result.all_events)


def test_the_environment_puts_the_code_location_on_dask() -> None:
    env = {**os.environ, "GREEN_PIPELINE_EXECUTOR": "dask", "DASK_SCHEDULER_ADDRESS": "tcp://10.0.0.5:8786"}
    done = subprocess.run([sys.executable, "-c", LOAD_WITH_DASK], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    name, execution = json.loads(done.stdout.strip().splitlines()[-1])
    assert name == "dask" and execution == {"cluster": {"existing": {"address": "tcp://10.0.0.5:8786"}}}


def test_an_unknown_engine_is_refused_with_the_setting_named() -> None:
    with pytest.raises(InvalidConfigError, match="GREEN_PIPELINE_EXECUTOR='spark' is not one of in_process, dask, k8s"):
        engine_executor("spark")
