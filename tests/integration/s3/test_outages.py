"""The S3 server stopped in the middle of a run, while the model store is being written.

The step fails on the real connection error, the jobs' RetryPolicy reruns it with backoff, and the run succeeds
if S3 is back in time; if not, it fails naming the endpoint and a re-run of the batch resumes cleanly. Either
way the interrupted version is never listed, loaded or promoted. A refused batch, by contrast, is not retried.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from dagster import DagsterEventType, DagsterInstance, EventLogEntry, instance_for_test
from s3fs import S3FileSystem

from green_pipeline.app.definitions import defs
from green_pipeline.app.runner import BatchOutcome, process_batches
from green_pipeline.assets.jobs import TRANSIENT_FAULT_RETRIES
from green_pipeline.demo.stream import StreamSpec, write_stream
from green_pipeline.errors import StoreError
from green_pipeline.store.model_store import ModelStore

if TYPE_CHECKING:
    from conftest import S3Server

pytestmark = pytest.mark.integration
STREAM = StreamSpec(days=3, rows_per_day=2000, covariate_shift_days=(), concept_drift_days=())


@dataclass(frozen=True)
class Deployed:
    """A bucket whose first batch has deployed v0001; every later batch retrains and publishes a version."""

    server: S3Server
    bucket: str
    instance: DagsterInstance
    batches: list[str]
    config: dict[str, Any]

    def store(self) -> ModelStore:
        return ModelStore(f"s3://{self.bucket}/models", storage_options=self.server.options())

    def run(self, batch: str) -> BatchOutcome:
        return next(process_batches(defs, self.instance, [batch], self.config))

    def step_events(self, run_id: str, event_type: DagsterEventType, step: str) -> list[EventLogEntry]:
        return [e for e in self.instance.all_logs(run_id, of_type=event_type) if e.step_key == step]


@pytest.fixture(scope="module")
def deployed(s3_server: S3Server) -> Iterator[Deployed]:
    bucket = s3_server.new_bucket()
    batches = write_stream(STREAM, f"s3://{bucket}/incoming", s3_server.options())
    storage = {"endpoint_url": s3_server.endpoint, "access_key_id": "k", "secret_access_key": "s"}
    # One try per S3 request: an unreachable endpoint fails the step in about a second and the RetryPolicy takes over.
    storage |= {"request_attempts": 1}
    config = s3_server.pipeline_config(bucket, storage, policy={"always_retrain": True})
    with instance_for_test() as instance:
        deployed = Deployed(s3_server, bucket, instance, batches, config)
        first = deployed.run(batches[0])
        assert first.success and first.deployed_version == "v0001", first.error
        yield deployed


@pytest.fixture(autouse=True)
def s3_running_after_each_test(s3_server: S3Server) -> Iterator[None]:
    yield
    if not s3_server.running:
        s3_server.start()


def stop_s3_before_writing(
    monkeypatch: pytest.MonkeyPatch, server: S3Server, key_suffix: str, back_after_s: float | None = None
) -> threading.Event:
    """Stop the server just before the first PUT of a key ending in ``key_suffix``, so that PUT really fails.

    With ``back_after_s`` the server starts again that long after, on the same port and with the same data.
    """
    real_call = S3FileSystem._call_s3
    stopped = threading.Event()

    async def call_s3(fs: S3FileSystem, method: str, *args: Any, **kwargs: Any) -> Any:
        if method == "put_object" and str(kwargs.get("Key", "")).endswith(key_suffix) and not stopped.is_set():
            stopped.set()
            server.stop()
            if back_after_s is not None:
                threading.Timer(back_after_s, server.start).start()
        return await real_call(fs, method, *args, **kwargs)

    monkeypatch.setattr(S3FileSystem, "_call_s3", call_s3)
    return stopped


def _next(version: str, step: int = 1) -> str:
    return f"v{int(version[1:]) + step:04d}"


def test_a_step_that_loses_s3_is_retried_and_the_run_succeeds_when_s3_returns(
    deployed: Deployed, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = deployed.store()
    before = store.versions()
    stopped = stop_s3_before_writing(monkeypatch, deployed.server, "/model.txt", back_after_s=2.0)

    outcome = deployed.run(deployed.batches[1])

    assert stopped.is_set() and outcome.success, outcome.error
    retries = deployed.step_events(outcome.run_id, DagsterEventType.STEP_UP_FOR_RETRY, "deployed_model")
    assert 1 <= len(retries) <= TRANSIENT_FAULT_RETRIES.max_retries
    connection_error = f'Could not connect to the endpoint URL: "{deployed.server.endpoint}/{deployed.bucket}/'
    assert connection_error in retries[0].dagster_event.step_retry_data.error.to_string()
    # The interrupted attempt had claimed the next number: it stays unlisted and the retry published the one after.
    interrupted = _next(before[-1])
    assert outcome.deployed_version == _next(before[-1], 2)
    assert store.versions() == [*before, outcome.deployed_version]
    with pytest.raises(StoreError, match=rf"version {interrupted} of .* was never completed"):
        store.load(interrupted)
    assert store.load().version == store.current_version() == outcome.serving_version


def test_s3_down_past_the_retries_fails_naming_the_endpoint_and_a_rerun_resumes_cleanly(
    deployed: Deployed, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = deployed.store()
    before, serving = store.versions(), store.current_version()
    stop_s3_before_writing(monkeypatch, deployed.server, "/model.txt")

    failed = deployed.run(deployed.batches[2])

    assert not failed.success and failed.error is not None
    assert failed.error.startswith("deployed_model: botocore.exceptions.EndpointConnectionError: ")
    assert f'Could not connect to the endpoint URL: "{deployed.server.endpoint}/' in failed.error
    retries = deployed.step_events(failed.run_id, DagsterEventType.STEP_UP_FOR_RETRY, "deployed_model")
    assert len(retries) == TRANSIENT_FAULT_RETRIES.max_retries

    deployed.server.start()
    assert (store.versions(), store.current_version()) == (before, serving)  # nothing half-written is seen
    rerun = deployed.run(deployed.batches[2])

    assert rerun.success, rerun.error
    assert rerun.deployed_version == _next(before[-1], 2)  # the failed run's claim is never reused
    assert store.versions() == [*before, rerun.deployed_version]
    assert all(store.load(version).version == version for version in store.versions())  # checksums verified
    assert store.load().version == rerun.serving_version


def test_a_refused_batch_fails_at_once_without_retries(deployed: Deployed) -> None:
    empty = "batch-2026-01-09-empty.csv"
    deployed.server.fs().pipe_file(f"{deployed.bucket}/incoming/{empty}", b"")

    outcome = deployed.run(empty)

    assert not outcome.success and outcome.error is not None
    assert outcome.error.startswith("ingested_batch: green_pipeline.errors.InvalidBatchError: ")
    assert "the file is empty (0 bytes)" in outcome.error
    assert not deployed.step_events(outcome.run_id, DagsterEventType.STEP_UP_FOR_RETRY, "ingested_batch")
    (failure,) = deployed.step_events(outcome.run_id, DagsterEventType.STEP_FAILURE, "ingested_batch")
    description = failure.dagster_event.step_failure_data.user_failure_data.description
    assert description.startswith(f"InvalidBatchError: s3://{deployed.bucket}/incoming/{empty}: the file is empty")
