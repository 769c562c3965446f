"""The pipeline on a shared instance in PostgreSQL: deploy/postgres/dagster.yaml against a throwaway cluster.

The cluster is Debian's server (``make postgresql`` installs it), started for this module in its own folder and on a
free port, with password authentication over TCP as a real deployment has. ``initdb`` and ``pg_ctl`` refuse root, so
as root they run as the ``postgres`` user. The CLI runs batches on it as a user would (``DAGSTER_HOME`` holding that
file, credentials in ``DAGSTER_PG_*``), then the ledger, the runner and the drift sensor read its event log back.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from dagster import DagsterEventType, DagsterInstance, DagsterInvalidConfigError, build_sensor_context

from green_pipeline.app.cli import main
from green_pipeline.app.definitions import defs
from green_pipeline.app.runner import processed_batches, run_config
from green_pipeline.assets.jobs import energy_ledger_job, green_pipeline_job, monitoring_job
from green_pipeline.assets.partitions import batch_partitions
from green_pipeline.demo.stream import LABEL, StreamSpec, write_stream
from green_pipeline.orchestration.ledger import batch_kpis, entries_of, materializations, totals
from green_pipeline.orchestration.resources import CarbonAwareScheduling
from green_pipeline.sensors.drift import drift_retraining_sensor

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
INSTANCE_FILE = REPO / "deploy" / "postgres" / "dagster.yaml"
SERVER = Path("/usr/lib/postgresql")
#: Day 0 trains the first model, day 1 is like day 0, day 2 starts a covariate shift (as conftest's SMALL_STREAM).
STREAM = StreamSpec(days=3, rows_per_day=3000, covariate_shift_days=(2,), concept_drift_days=())
#: The steps a batch without drift materializes (test_pipeline checks the same on SQLite).
QUIET_BATCH_ASSETS = {"ingested_batch", "validated_batch", "drift_report", "predictions"}


@dataclass(frozen=True)
class Cluster:
    folder: Path
    port: int
    password: str
    username: str = "green"
    database: str = "dagster"

    def environment(self) -> dict[str, str]:
        """The variables deploy/postgres/dagster.yaml reads."""
        return {
            "DAGSTER_PG_USERNAME": self.username,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_DB": self.database,
            "DAGSTER_PG_PORT": str(self.port),
        }


def _server_bin() -> Path:
    versions = sorted(SERVER.glob("*/bin/initdb"), key=lambda path: int(path.parts[-3]))
    if not versions:
        pytest.fail(
            f"PostgreSQL's server is not installed (no {SERVER}/*/bin/initdb): run `make postgresql` "
            "(Debian's postgresql package), then this test again.",
            pytrace=False,
        )
    return versions[-1].parent


def _as_server_user(*command: str | Path, log: Path | None = None) -> None:
    """Run ``command`` as the ``postgres`` user when root (initdb and pg_ctl refuse root), else as ourselves."""
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    done = subprocess.run([*prefix, *map(str, command)], capture_output=True, text=True, timeout=60, check=False)
    server_log = log.read_text() if log and log.exists() else ""
    assert done.returncode == 0, f"{Path(command[0]).name} failed: {done.stderr or done.stdout}{server_log}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A new cluster with one database and a password-protected superuser, stopped and deleted afterwards."""
    server = _server_bin()
    # Not under pytest's tmp folders: they are root's alone and the postgres user could not enter them.
    folder = Path(tempfile.mkdtemp(prefix="green-pg-"))
    try:
        found = Cluster(folder=folder, port=_free_port(), password=secrets.token_urlsafe(16))
        password_file = folder / "password"
        password_file.write_text(found.password)
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres")
            shutil.chown(password_file, "postgres")
        data, log = folder / "data", folder / "server.log"
        # Local (socket) connections trusted, TCP ones with the password, as the instance connects.
        auth = ("--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={password_file}")
        quick = ("-E", "UTF8", "--no-sync", "--no-instructions")
        _as_server_user(server / "initdb", "-D", data, "-U", found.username, *auth, *quick)
        options = f"-c listen_addresses=127.0.0.1 -c port={found.port} -c unix_socket_directories={folder} -c fsync=off"
        # -w: returns once the server accepts connections, or fails after -t seconds.
        _as_server_user(server / "pg_ctl", "start", "-w", "-t", "30", "-D", data, "-l", log, "-o", options, log=log)
        try:
            socket_login = ("-h", folder, "-p", str(found.port), "-U", found.username)
            _as_server_user(server / "createdb", *socket_login, found.database)
            yield found
        finally:
            _as_server_user(server / "pg_ctl", "stop", "-w", "-m", "fast", "-D", data)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class SharedRuns:
    batches: list[str]
    home: Path
    run_output: str
    again_output: str
    ledger: dict


def _cli(*args: str) -> tuple[int, str]:
    """``green-pipeline ARGS`` in this process (as test_cli does), with what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(list(args))
    return code, out.getvalue()


@pytest.fixture(scope="module")
def shared(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> SharedRuns:
    """The small stream's first two batches run by ``green-pipeline run`` on the PostgreSQL instance, the third by
    the monitoring job (which leaves its retraining to the drift sensor), then ``green-pipeline ledger --json``."""
    root = tmp_path_factory.mktemp("postgres-instance")
    batches = write_stream(STREAM, str(root / "data"))
    incoming = root / "incoming"
    incoming.mkdir()
    for batch in batches[:2]:
        shutil.copyfile(root / "data" / batch, incoming / batch)
    home = root / "dagster-home"
    home.mkdir()
    shutil.copyfile(INSTANCE_FILE, home / "dagster.yaml")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**cluster.environment(), "DAGSTER_HOME": str(home)}.items():
            patch.setenv(name, value)
        patch.chdir(root)
        store, artifacts = str(root / "store"), str(root / "artifacts")
        args = ("--data", str(incoming), "--store", store, "--label", LABEL, "--artifacts", artifacts)
        code, run_output = _cli("run", *args)
        assert code == 0, run_output
        again, again_output = _cli("run", *args)
        assert again == 0, again_output
        settings = {"dataset": {"data_url": str(root / "data")}, "model_store": {"store_url": store}}
        with DagsterInstance.get() as instance:
            instance.add_dynamic_partitions(batch_partitions.name, batches[2:])
            monitoring = defs.resolve_job_def(monitoring_job.name).execute_in_process(
                run_config=run_config({**settings, "artifacts": {"base_url": artifacts}}),
                instance=instance,
                partition_key=batches[2],
            )
            assert monitoring.success
        code, ledger = _cli("ledger", "--json")
        assert code == 0, ledger
    return SharedRuns(batches, home, run_output, again_output, json.loads(ledger))


@pytest.fixture
def instance(shared: SharedRuns, cluster: Cluster) -> Iterator[DagsterInstance]:
    """The shared instance as another process would open it: the same file, credentials from the environment."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in cluster.environment().items():
            patch.setenv(name, value)
        with DagsterInstance.from_config(str(shared.home)) as opened:
            yield opened


def test_the_instance_file_keeps_runs_event_log_and_schedules_in_postgresql(instance: DagsterInstance) -> None:
    info = instance.info_dict()  # what `dagster instance info` prints
    stored = {part: info[part] for part in ("run_storage", "event_log_storage", "schedule_storage")}
    assert stored == {
        "run_storage": "PostgresRunStorage",
        "event_log_storage": "PostgresEventLogStorage",
        "schedule_storage": "PostgresScheduleStorage",
    }
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    # The training pool's slot lives in PostgreSQL too, with the default limit the file sets.
    assert instance.event_log_storage.get_concurrency_info("training").slot_count == 1


def test_its_run_queue_and_pools_are_the_top_level_files() -> None:
    shared_file = yaml.safe_load(INSTANCE_FILE.read_text())
    local_file = yaml.safe_load((REPO / "dagster.yaml").read_text())
    assert "storage" not in local_file and set(shared_file["storage"]) == {"postgres"}
    for section in ("run_coordinator", "concurrency", "telemetry"):
        assert shared_file[section] == local_file[section], section


def test_every_credential_comes_from_the_environment() -> None:
    fields = yaml.safe_load(INSTANCE_FILE.read_text())["storage"]["postgres"]["postgres_db"]
    assert fields == {
        name: {"env": f"DAGSTER_PG_{variable}"}
        for name, variable in (
            ("username", "USERNAME"),
            ("password", "PASSWORD"),
            ("hostname", "HOST"),
            ("db_name", "DB"),
            ("port", "PORT"),
        )
    } | {"scheme": "postgresql+psycopg2"}


def test_a_missing_credential_stops_the_instance_by_name(
    tmp_path: Path, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copyfile(INSTANCE_FILE, tmp_path / "dagster.yaml")
    for name, value in cluster.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DAGSTER_PG_PASSWORD")
    with pytest.raises(DagsterInvalidConfigError, match="DAGSTER_PG_PASSWORD"):
        DagsterInstance.from_config(str(tmp_path))


def test_the_cli_runs_batches_there_and_the_runner_finds_them_done(shared: SharedRuns, instance) -> None:
    first, second = shared.batches[:2]
    assert first in shared.run_output and "full_retrain" in shared.run_output
    assert "total: 2 batches, 1 retrains" in shared.run_output
    assert "already processed" in shared.again_output  # the runner read the runs back from PostgreSQL
    assert processed_batches(instance) == {first, second}
    for run in instance.get_runs():
        assert run.is_success, f"run {run.run_id} of {run.job_name}: {run.status}"


def test_the_ledger_reads_each_runs_steps_and_energy_back(shared: SharedRuns, instance) -> None:
    runs = instance.get_runs()
    pipeline_runs = [run.run_id for run in runs if run.job_name == green_pipeline_job.name]
    assert len(pipeline_runs) == 2 and {run.job_name for run in runs} == {
        green_pipeline_job.name,
        monitoring_job.name,
        energy_ledger_job.name,  # `run` refreshes the ledger asset at its end
    }
    by_run = {row["key"]: row for row in shared.ledger["by_run"]}
    assert set(by_run) == {run.run_id for run in runs}
    for run in runs:
        logged = instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
        assert by_run[run.run_id]["materializations"] == len(logged) > 0, run.job_name
        assert by_run[run.run_id]["unmeasured"] == 0 and by_run[run.run_id]["energy_kwh"] > 0, run.job_name

    entries = entries_of(materializations(instance))
    assert [total.materializations for total in totals(entries, by="run_id")] == [
        by_run[key]["materializations"] for key in sorted(by_run)
    ]
    per_asset = {row["key"]: row for row in shared.ledger["by_asset"]}
    assert per_asset["drift_report"]["materializations"] == 3
    assert per_asset["deployed_model"]["materializations"] == 1
    first, quiet, drifted = shared.batches
    quiet_steps = {e.asset for e in entries if e.partition == quiet}
    assert quiet_steps == QUIET_BATCH_ASSETS

    kpis = {row.batch: row for row in batch_kpis(materializations(instance))}
    assert kpis[first].action == "full_retrain" and kpis[first].decision == "promoted"
    assert kpis[first].deployed_version == "v0001" and kpis[first].promoted is True
    assert kpis[quiet].action == "skipped" and kpis[quiet].served_version == "v0001"
    assert kpis[drifted].action == "skipped" and kpis[drifted].served_auc is not None  # the sensor's to retrain
    assert [row["batch"] for row in shared.ledger["by_batch"]] == [first, quiet, drifted]


def test_the_drift_sensor_reads_the_event_log_there(shared: SharedRuns, instance) -> None:
    carbon = {"carbon_aware": CarbonAwareScheduling()}
    result = drift_retraining_sensor(build_sensor_context(instance=instance, resources=carbon))
    assert [request.partition_key for request in result.run_requests] == [shared.batches[2]]
    again = drift_retraining_sensor(build_sensor_context(instance=instance, cursor=result.cursor, resources=carbon))
    assert again.run_requests == []
