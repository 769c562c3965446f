"""deploy/k8s/run_config.yaml checked by Dagster's own validation against the batch jobs on the k8s executor."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInvalidConfigError, Definitions, validate_run_config
from dagster_k8s import k8s_job_executor

from green_pipeline.app.definitions import defs
from green_pipeline.assets.jobs import batch_jobs

pytestmark = pytest.mark.integration

RUN_CONFIG = Path(__file__).parents[2] / "deploy" / "k8s" / "run_config.yaml"
BATCH_JOBS = ("green_pipeline_job", "monitoring_job", "retraining_job")
#: The pipeline job as a k8s code location carries it, built without reloading the definitions.
K8S_PIPELINE_JOB = Definitions(
    jobs=[batch_jobs(k8s_job_executor)[0]], assets=defs.assets, resources=defs.resources
).resolve_job_def("green_pipeline_job")
S3_ENV = {"AWS_ACCESS_KEY_ID": "id-from-the-secret", "AWS_SECRET_ACCESS_KEY": "key-from-the-secret"}

#: What a k8s deployment runs: the code location loaded with GREEN_PIPELINE_EXECUTOR=k8s (as the image sets it).
LOAD_AND_VALIDATE = """
import json, sys, yaml
from dagster import validate_run_config
from green_pipeline.app.definitions import defs
config = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))
found = {}
for name in ("green_pipeline_job", "monitoring_job", "retraining_job"):
    job = defs.resolve_job_def(name)
    found[name] = [job.executor_def.name, validate_run_config(job, config)["execution"]["k8s"]["job_namespace"]]
print(json.dumps(found))
"""


@pytest.fixture
def run_config() -> dict:
    return yaml.safe_load(RUN_CONFIG.read_text(encoding="utf-8"))


def test_the_code_location_loaded_for_k8s_accepts_the_run_config() -> None:
    env = {**os.environ, **S3_ENV, "GREEN_PIPELINE_EXECUTOR": "k8s"}
    done = subprocess.run(
        [sys.executable, "-c", LOAD_AND_VALIDATE, str(RUN_CONFIG)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {name: ["k8s", "green-pipeline"] for name in BATCH_JOBS}


def test_s3_credentials_come_from_the_secret_environment(run_config: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = run_config["resources"]["object_storage"]["config"]
    assert storage["access_key_id"] == {"env": "AWS_ACCESS_KEY_ID"}
    assert storage["secret_access_key"] == {"env": "AWS_SECRET_ACCESS_KEY"}
    assert run_config["execution"]["config"]["env_secrets"] == ["green-pipeline-s3"]
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    resolved = validate_run_config(K8S_PIPELINE_JOB, run_config)
    assert resolved["resources"]["object_storage"]["config"]["secret_access_key"] == S3_ENV["AWS_SECRET_ACCESS_KEY"]
    execution = resolved["execution"]["k8s"]  # the processed config names the executor it configured
    assert execution["max_concurrent"] == 2
    assert execution["step_k8s_config"]["container_config"]["resources"]["limits"]["cpu"] == "1"

    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(DagsterInvalidConfigError, match="AWS_SECRET_ACCESS_KEY"):
        validate_run_config(K8S_PIPELINE_JOB, run_config)


def test_a_misspelt_executor_setting_is_rejected(run_config: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    run_config["execution"]["config"]["max_concurent"] = run_config["execution"]["config"].pop("max_concurrent")
    with pytest.raises(DagsterInvalidConfigError, match="max_concurent"):
        validate_run_config(K8S_PIPELINE_JOB, run_config)
