"""The whole pipeline against a real S3-protocol server (moto's server mode on loopback): batches read from
s3://, model store and artefacts written to s3://, checked through s3fs."""

import json
import socket
from collections.abc import Iterator

import pytest
import s3fs
from dagster import DagsterInstance
from moto.server import ThreadedMotoServer

from green_pipeline.app.definitions import defs
from green_pipeline.app.runner import process_batches, run_config
from green_pipeline.demo.stream import StreamSpec, write_stream
from green_pipeline.store.model_store import ModelStore

pytestmark = pytest.mark.integration
BUCKET = "green-pipeline-test"
#: moto accepts any credentials; they go through the ObjectStorage resource as a user's would.
CREDENTIALS = {"access_key_id": "testing-key", "secret_access_key": "testing-secret", "region_name": "eu-west-1"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def test_pipeline_reads_and_writes_s3(s3_endpoint: str, instance: DagsterInstance) -> None:
    storage = {"endpoint_url": s3_endpoint, **CREDENTIALS}
    options = {
        "key": CREDENTIALS["access_key_id"],
        "secret": CREDENTIALS["secret_access_key"],
        "client_kwargs": {"endpoint_url": s3_endpoint, "region_name": "eu-west-1"},
    }
    fs = s3fs.S3FileSystem(**options)
    fs.mkdir(BUCKET)
    names = write_stream(
        StreamSpec(days=3, rows_per_day=3000, covariate_shift_days=(2,), concept_drift_days=()),
        f"s3://{BUCKET}/incoming",
        options,
    )
    fs.pipe_file(f"{BUCKET}/incoming/_upload-in-progress.parquet", b"partial")
    config = run_config(
        {
            "object_storage": storage,
            "dataset": {"data_url": f"s3://{BUCKET}/incoming"},
            "model_store": {"store_url": f"s3://{BUCKET}/models"},
            "artifacts": {"base_url": f"s3://{BUCKET}/artifacts"},
        }
    )

    outcomes = list(process_batches(defs, instance, names, config))

    assert [o.success for o in outcomes] == [True, True, True], [o.error for o in outcomes]
    assert [o.strategy for o in outcomes] == ["full_retrain", None, "warm_start"]
    fs.invalidate_cache()
    store = ModelStore(f"s3://{BUCKET}/models", storage_options=options)
    assert store.versions() == ["v0001", "v0002"] and store.current_version() == "v0002"
    assert store.load().metadata["lineage"]["data_url"] == f"s3://{BUCKET}/incoming"
    version_files = sorted(p.rsplit("/", 1)[1] for p in fs.ls(f"{BUCKET}/models/models/churn/v0002"))
    assert version_files == ["manifest.json", "metadata.json", "model.txt", "reference.parquet"]
    assert fs.exists(f"{BUCKET}/artifacts/reports/drift_report/{names[2]}.html")
    assert json.loads(fs.cat_file(f"{BUCKET}/models/models/churn/current.json"))["version"] == "v0002"
    secrets_in_metadata = [
        e
        for e in instance.all_logs(outcomes[2].run_id)
        if e.asset_materialization and "testing-secret" in str(e.asset_materialization.metadata)
    ]
    assert not secrets_in_metadata
