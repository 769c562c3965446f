"""The ``green-pipeline`` commands reach an S3-compatible store (moto on loopback) through ``--config`` alone.

No ``AWS_*`` variable, shared credentials file or instance metadata is reachable here, so a command succeeds only
if it builds its storage from the file's ``object_storage`` section, as the runs do; the standard ``AWS_*``
variables work as well, and a store that cannot be reached is reported in one line naming the URL and the setting.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from green_pipeline.app.cli import main
from green_pipeline.demo.stream import StreamSpec, write_stream

if TYPE_CHECKING:
    from conftest import S3Server

pytestmark = pytest.mark.integration
#: Day 0 trains v0001, day 1 is skipped, the shift of day 2 deploys v0002 (as in tests/integration/test_cli.py).
STREAM = StreamSpec(days=3, rows_per_day=3000, covariate_shift_days=(2,), concept_drift_days=())


@dataclass(frozen=True)
class Deployment:
    """A bucket the CLI filled through ``run``, the config file it was given, and the CLI's output."""

    bucket: str
    config: Path
    run_stdout: str

    @property
    def store(self) -> str:
        return f"s3://{self.bucket}/models"


def _isolate(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """No AWS credentials but those a command is given; the Dagster instance and working folder under ``root``."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(root / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(root / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("DAGSTER_HOME", str(root / "dagster-home"))
    monkeypatch.chdir(root)


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _object_storage(server: S3Server) -> dict[str, str]:
    """The server's endpoint and the test credentials, as a config file's object_storage section."""
    options = server.options()
    return {
        "endpoint_url": server.endpoint,
        "region_name": options["client_kwargs"]["region_name"],
        "access_key_id": options["key"],
        "secret_access_key": options["secret"],
    }


def _write_config(path: Path, storage: dict[str, str], store_url: str | None = None) -> Path:
    sections = {"object_storage": storage} | ({"model_store": {"store_url": store_url}} if store_url else {})
    path.write_text(yaml.safe_dump(sections))
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-s3")


@pytest.fixture
def isolated(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    _isolate(monkeypatch, workdir)
    return workdir


@pytest.fixture(scope="module")
def deployment(s3_server: S3Server, workdir: Path) -> Deployment:
    """``run`` over the stream in a new bucket, the endpoint and credentials only in the config file."""
    bucket = s3_server.new_bucket()
    write_stream(STREAM, f"s3://{bucket}/incoming", s3_server.options())
    store = f"s3://{bucket}/models"
    config = _write_config(workdir / "config.yaml", _object_storage(s3_server), store)
    args = ["run", "--data", f"s3://{bucket}/incoming", "--store", store, "--label", "churned"]
    args += ["--artifacts", f"s3://{bucket}/artifacts", "--config", str(config)]
    with pytest.MonkeyPatch.context() as monkeypatch, contextlib.redirect_stdout(io.StringIO()) as out:
        _isolate(monkeypatch, workdir)
        code = main(args)
    assert code == 0, out.getvalue()
    return Deployment(bucket, config, out.getvalue())


def test_run_processes_every_batch_with_the_storage_of_its_config(
    deployment: Deployment, s3_server: S3Server, workdir: Path
) -> None:
    assert all(STREAM.batch_name(day) in deployment.run_stdout for day in range(STREAM.days))
    assert "total: 3 batches, 2 retrains" in deployment.run_stdout
    # The ledger refreshed after the runs wrote its chart with the runs' artifacts URL and storage, nothing locally.
    assert s3_server.fs().exists(f"{deployment.bucket}/artifacts/reports/energy_ledger/energy_and_quality.png")
    assert not (workdir / ".green_pipeline").exists()


def test_models_lists_and_rollback_moves_current_through_the_config(
    deployment: Deployment, s3_server: S3Server, isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = ["--config", str(deployment.config)]
    code, out, err = _cli(capsys, "models", "--json", *config)  # the store URL from its model_store section
    assert code == 0, err
    assert [(v["version"], v["serving"]) for v in json.loads(out)] == [("v0001", False), ("v0002", True)]

    code, out, err = _cli(capsys, "rollback", "v0001", "--store", deployment.store, *config)
    assert code == 0 and "v0002 -> v0001" in out, err
    current = json.loads(s3_server.fs().cat_file(f"{deployment.bucket}/models/models/churn/current.json"))
    assert current["version"] == "v0001"
    code, out, err = _cli(capsys, "models", "--json", "--store", deployment.store, *config)
    assert [(v["version"], v["serving"]) for v in json.loads(out)] == [("v0001", True), ("v0002", False)]


def test_ledger_prints_the_runs_made_against_the_store(
    deployment: Deployment, isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _cli(capsys, "ledger", "--json")
    assert code == 0, err
    per_asset = {row["key"]: row for row in json.loads(out)["by_asset"]}
    assert per_asset["drift_report"]["materializations"] == STREAM.days
    assert per_asset["deployed_model"]["materializations"] == 2
    assert per_asset["energy_ledger"]["materializations"] == 1
    assert [row["batch"] for row in json.loads(out)["by_batch"]] == [STREAM.batch_name(d) for d in range(STREAM.days)]


def test_the_standard_aws_variables_reach_the_store_without_a_config(
    deployment: Deployment,
    s3_server: S3Server,
    isolated: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    storage = _object_storage(s3_server)
    monkeypatch.setenv("AWS_ENDPOINT_URL", storage["endpoint_url"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", storage["region_name"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", storage["access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", storage["secret_access_key"])
    code, out, err = _cli(capsys, "models", "--json", "--store", deployment.store)
    assert code == 0, err
    assert [v["version"] for v in json.loads(out)] == ["v0001", "v0002"]


@pytest.mark.parametrize("command", ["run", "models", "rollback"])
def test_a_store_without_credentials_is_one_line_naming_the_url_and_the_settings(
    deployment: Deployment,
    s3_server: S3Server,
    isolated: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    config = _write_config(isolated / "no-credentials.yaml", {"endpoint_url": s3_server.endpoint})
    data, store = f"s3://{deployment.bucket}/incoming", deployment.store
    args = {
        "run": ["run", "--data", data, "--store", store, "--label", "churned"],
        "models": ["models", "--store", store],
        "rollback": ["rollback", "v0002", "--store", store],
    }[command]
    code, _, err = _cli(capsys, *args, "--config", str(config))
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    url = data if command == "run" else store
    assert err.startswith(f"error: {url}") and s3_server.endpoint in err
    assert "NoCredentialsError" in err and f"object_storage section of {config}" in err and "access_key_id" in err
