"""S3 credentials reach the pipeline only through ``EnvVar`` and are written nowhere it writes.

moto checks every request's signature here (its IAM authentication switched on), against an access key it
generated, so the run succeeds only if the secret really reached s3fs. Then everything the run left behind is
searched for the key id and the secret: every event record (serialized), the run config stored with each run,
every file of the Dagster instance (SQLite storage, compute logs), the process's stdout and stderr, asset
metadata, and every object in the bucket (artefacts, reports, model store). The same runs and search with the
credentials written in plain run config do find them, so "found nowhere" is a result the search can fail.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import boto3
import pytest
import requests
from dagster import DagsterInstance, instance_for_test, serialize_value

from green_pipeline.app.definitions import defs
from green_pipeline.app.runner import process_batches
from green_pipeline.demo.stream import StreamSpec, write_stream

if TYPE_CHECKING:
    from conftest import S3Server

pytestmark = pytest.mark.integration
KEY_ENV, SECRET_ENV = "GREEN_PIPELINE_TEST_S3_KEY_ID", "GREEN_PIPELINE_TEST_S3_SECRET"
STREAM = StreamSpec(days=2, rows_per_day=1500, covariate_shift_days=(), concept_drift_days=())
ALLOW_S3 = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}


@pytest.fixture
def credentials(s3_server: S3Server) -> Iterator[tuple[str, str]]:
    """An access key moto generates for a new IAM user, with moto authenticating every request while it is used."""
    iam = boto3.client(
        "iam",
        region_name="us-east-1",
        endpoint_url=s3_server.endpoint,
        aws_access_key_id="setup",
        aws_secret_access_key="setup",
    )
    user = f"pipeline-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="s3", PolicyDocument=json.dumps(ALLOW_S3))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    _moto_authentication(s3_server, after_requests="0")
    try:
        yield key["AccessKeyId"], key["SecretAccessKey"]
    finally:
        _moto_authentication(s3_server, after_requests="inf")


def _moto_authentication(server: S3Server, after_requests: str) -> None:
    """moto's server API: authenticate every request after this many more ("inf": never)."""
    requests.post(f"{server.endpoint}/moto-api/reset-auth", data=after_requests.encode(), timeout=10).raise_for_status()


def test_credentials_given_as_env_vars_appear_in_no_log_event_metadata_or_file(
    s3_server: S3Server,
    credentials: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    key, secret = credentials
    monkeypatch.setenv(KEY_ENV, key)
    monkeypatch.setenv(SECRET_ENV, secret)
    bucket, batches = _bucket_with_batches(s3_server, key, secret)
    with pytest.raises(PermissionError):  # the server does check the secret
        s3_server.fs(key, "not-the-secret").ls(bucket)
    storage = {"endpoint_url": s3_server.endpoint, "access_key_id": {"env": KEY_ENV}}
    storage |= {"secret_access_key": {"env": SECRET_ENV}}

    records = _run_and_collect(s3_server, bucket, storage, batches, tmp_path, capfd, (key, secret))

    stored_run_configs = [text for name, text in records if name.startswith("run config")]
    assert len(stored_run_configs) == 2  # names, never values:
    assert all(KEY_ENV in text and SECRET_ENV in text for text in stored_run_configs)
    assert not _leaks(records, key, secret)


def test_the_same_search_finds_credentials_put_in_plain_run_config(
    s3_server: S3Server, credentials: tuple[str, str], capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The positive control of the test above: its search does see a secret that was written down."""
    key, secret = credentials
    bucket, batches = _bucket_with_batches(s3_server, key, secret)
    storage = {"endpoint_url": s3_server.endpoint, "access_key_id": key, "secret_access_key": secret}

    records = _run_and_collect(s3_server, bucket, storage, batches, tmp_path, capfd, (key, secret))

    leaks = _leaks(records, key, secret)
    assert any(name.startswith("run config ") for name in leaks), leaks
    assert any(name.startswith("file ") and name.endswith("/history/runs.db") for name in leaks), leaks


def _bucket_with_batches(s3_server: S3Server, key: str, secret: str) -> tuple[str, list[str]]:
    bucket = s3_server.new_bucket(key, secret)
    return bucket, write_stream(STREAM, f"s3://{bucket}/incoming", s3_server.options(key, secret))


def _run_and_collect(
    s3_server: S3Server,
    bucket: str,
    storage: dict[str, object],
    batches: list[str],
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    credentials: tuple[str, str],
) -> list[tuple[str, str]]:
    """Run the batches on a new instance, then gather everything the runs left behind, by where it was found."""
    home = tmp_path / "dagster-home"
    home.mkdir()
    with instance_for_test(temp_dir=str(home)) as instance:
        # Every HTML report rendered (by default only a retrain's is), so report files are searched too.
        config = s3_server.pipeline_config(bucket, storage, policy={"drift_report_html": "always"})
        outcomes = list(process_batches(defs, instance, batches, config))
        assert [o.success for o in outcomes] == [True, True], [o.error for o in outcomes]
        records = _everything_recorded(instance, [o.run_id for o in outcomes])
    records += [(f"file {path}", path.read_bytes().decode("latin-1")) for path in home.rglob("*") if path.is_file()]
    scanned = " ".join(name for name, _ in records)
    assert "/compute_logs/" in scanned and "/history/runs/index.db" in scanned  # the instance's files were read
    fs = s3_server.fs(*credentials)
    objects = fs.find(bucket)
    assert any("/models/" in path for path in objects) and any("/artifacts/reports/" in path for path in objects)
    records += [(f"s3://{path}", fs.cat_file(path).decode("latin-1")) for path in objects]
    captured = capfd.readouterr()
    return [*records, ("stdout", captured.out), ("stderr", captured.err)]


def _leaks(records: list[tuple[str, str]], key: str, secret: str) -> list[str]:
    """Where the key id or the secret (also as it would appear in a URL) was found."""
    needles = {key, secret, quote(secret, safe="")}
    return [name for name, text in records if any(needle in text for needle in needles)]


def _everything_recorded(instance: DagsterInstance, run_ids: list[str]) -> list[tuple[str, str]]:
    """Every event record of the runs serialized (messages, metadata, errors), and each run's stored config."""
    recorded = []
    for run_id in run_ids:
        run = instance.get_run_by_id(run_id)
        assert run is not None
        recorded.append((f"run config {run_id}", json.dumps(run.run_config)))
        recorded += [(f"event {run_id} {e.dagster_event_type}", serialize_value(e)) for e in instance.all_logs(run_id)]
    return recorded
