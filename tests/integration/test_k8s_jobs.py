"""The Kubernetes Jobs of the k8s executor's step pods, rendered from deploy/k8s/run_config.yaml and the ops' tags.

No cluster: the Jobs are built by dagster-k8s (green_pipeline.orchestration.k8s_jobs), and compared once with what the
executor itself sends to a stand-in Kubernetes API on 127.0.0.1. deploy/helm/values.yaml is checked against the run
config and dagster.yaml.
"""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import AssetKey, Definitions, execute_job, in_process_executor, instance_for_test, reconstructable
from dagster_k8s import k8s_job_executor

from green_pipeline.app.definitions import defs
from green_pipeline.assets.jobs import batch_jobs
from green_pipeline.assets.partitions import BATCHES_PARTITIONS_NAME
from green_pipeline.errors import InvalidConfigError
from green_pipeline.orchestration.k8s_jobs import STEP_COMMAND, render_step_jobs
from green_pipeline.orchestration.metadata import MONITORING_STEPS, RETRAINING_STEPS
from green_pipeline.training.trainer import NUM_THREADS

pytestmark = pytest.mark.integration

REPO = Path(__file__).parents[2]
RUN_CONFIG = REPO / "deploy" / "k8s" / "run_config.yaml"
HELM_VALUES = REPO / "deploy" / "helm" / "values.yaml"
K8S_PIPELINE_JOB = Definitions(
    jobs=[batch_jobs(k8s_job_executor)[0]], assets=defs.assets, resources=defs.resources
).resolve_job_def("green_pipeline_job")
#: The K8sRunLauncher config the Helm chart writes into the instance's dagster.yaml for deploy/helm/values.yaml.
LAUNCHER = {
    "instance_config_map": "dagster-instance",
    "dagster_home": "/opt/dagster/dagster_home",
    "postgres_password_secret": "dagster-postgresql-secret",
    "env_secrets": ["green-pipeline-s3"],
    "service_account_name": "dagster",
}
S3_ENV = {"AWS_ACCESS_KEY_ID": "AKIA-FROM-THE-SECRET", "AWS_SECRET_ACCESS_KEY": "key-from-the-secret-0123456789"}
HEAVY_STEPS = {"retrained_model", "compressed_model"}
ORDINARY_POD = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}}
HEAVY_POD = {
    "requests": {"cpu": str(NUM_THREADS), "memory": "2Gi"},
    "limits": {"cpu": str(NUM_THREADS), "memory": "4Gi"},
}


@pytest.fixture
def run_config() -> dict:
    return yaml.safe_load(RUN_CONFIG.read_text(encoding="utf-8"))


@pytest.fixture
def jobs(run_config: dict) -> dict[str, dict]:
    return render_step_jobs(K8S_PIPELINE_JOB, run_config, launcher=LAUNCHER)


def container(job: dict) -> dict:
    (only,) = job["spec"]["template"]["spec"]["containers"]
    return only


def env_of(job: dict) -> dict[str, Any]:
    return {entry["name"]: entry.get("value", entry.get("valueFrom")) for entry in container(job)["env"]}


def test_each_step_of_the_pipeline_gets_its_job(jobs: dict[str, dict]) -> None:
    assert set(jobs) == {key.path[-1] for key in (*MONITORING_STEPS, *RETRAINING_STEPS)}
    names = [job["metadata"]["name"] for job in jobs.values()]
    assert len(set(names)) == len(names) and all(len(name) <= 63 for name in names)


def test_training_and_compression_get_their_cores_and_other_steps_the_default(jobs: dict[str, dict]) -> None:
    resources = {key: container(job)["resources"] for key, job in jobs.items()}
    assert {key for key, pod in resources.items() if pod == HEAVY_POD} == HEAVY_STEPS
    assert all(pod == ORDINARY_POD for key, pod in resources.items() if key not in HEAVY_STEPS)
    # The training step is also the one in the "training" pool: one at a time across runs, whatever its pod.
    assert K8S_PIPELINE_JOB.graph.node_named("retrained_model").definition.pool == "training"


def test_a_deployment_resizes_the_training_pod_from_the_run_config(run_config: dict) -> None:
    run_config["execution"]["config"]["per_step_k8s_config"] = {
        "retrained_model": {"container_config": {"resources": {"limits": {"memory": "8Gi"}}}}
    }
    jobs = render_step_jobs(K8S_PIPELINE_JOB, run_config)
    # Merged over the op's tag, key by key: the memory limit changes, the cores stay.
    assert container(jobs["retrained_model"])["resources"] == {
        "requests": HEAVY_POD["requests"],
        "limits": {"cpu": str(NUM_THREADS), "memory": "8Gi"},
    }
    assert container(jobs["compressed_model"])["resources"] == HEAVY_POD


def test_each_pod_runs_its_step_from_the_image_in_the_namespace(jobs: dict[str, dict], run_config: dict) -> None:
    executor = run_config["execution"]["config"]
    for key, job in jobs.items():
        step = container(job)
        assert (step["image"], step["imagePullPolicy"]) == (executor["job_image"], "IfNotPresent")
        assert step["args"] == list(STEP_COMMAND) == ["dagster", "api", "execute_step"]
        assert env_of(job)["DAGSTER_RUN_STEP_KEY"] == key
        assert env_of(job)["DAGSTER_RUN_JOB_NAME"] == "green_pipeline_job"
        assert job["metadata"]["namespace"] == executor["job_namespace"] == "green-pipeline"
        for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
            assert labels["dagster/op"] == key and labels["dagster/job"] == "green_pipeline_job"
            assert labels["app.kubernetes.io/component"] == "step_worker"
        assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
        assert job["spec"]["backoffLimit"] == 0  # Dagster's retry policy retries a step, not Kubernetes


def test_pods_get_the_executor_and_instance_settings(jobs: dict[str, dict]) -> None:
    for job in jobs.values():
        env = env_of(job)
        assert env["GREEN_PIPELINE_EXECUTOR"] == "k8s"
        assert env["DAGSTER_HOME"] == LAUNCHER["dagster_home"]
        # The instance's PostgreSQL password comes from its Secret, by reference.
        assert env["DAGSTER_PG_PASSWORD"] == {
            "secretKeyRef": {"name": "dagster-postgresql-secret", "key": "postgresql-password"}
        }


def test_s3_credentials_come_from_the_secret_never_as_values(run_config: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    jobs = render_step_jobs(K8S_PIPELINE_JOB, run_config, launcher=LAUNCHER)
    for job in jobs.values():
        # Named by the launcher and the executor alike, the Secret is mounted once, as environment variables.
        assert container(job)["envFrom"] == [{"secretRef": {"name": "green-pipeline-s3"}}]
        assert not set(S3_ENV) & set(env_of(job))
    rendered = json.dumps(jobs)
    assert not any(value in rendered for value in S3_ENV.values())

    # What the check would catch: naming a variable alone in env_vars copies its value from the launching process.
    run_config["execution"]["config"]["env_vars"].append("AWS_SECRET_ACCESS_KEY")
    leaked = json.dumps(render_step_jobs(K8S_PIPELINE_JOB, run_config))
    assert S3_ENV["AWS_SECRET_ACCESS_KEY"] in leaked


def test_without_an_image_the_user_deployment_image_is_used_or_an_error_names_the_setting(run_config: dict) -> None:
    del run_config["execution"]["config"]["job_image"]
    with pytest.raises(InvalidConfigError, match="job_image"):
        render_step_jobs(K8S_PIPELINE_JOB, run_config)
    jobs = render_step_jobs(K8S_PIPELINE_JOB, run_config, image="registry.example.com/green-pipeline:0.2.0")
    assert {container(job)["image"] for job in jobs.values()} == {"registry.example.com/green-pipeline:0.2.0"}


def test_a_job_on_another_executor_or_a_misspelt_setting_is_refused(run_config: dict) -> None:
    in_process = Definitions(
        jobs=[batch_jobs(in_process_executor)[0]], assets=defs.assets, resources=defs.resources
    ).resolve_job_def("green_pipeline_job")
    with pytest.raises(InvalidConfigError, match="GREEN_PIPELINE_EXECUTOR=k8s"):
        render_step_jobs(in_process, run_config)
    run_config["execution"]["config"]["step_k8s_confg"] = run_config["execution"]["config"].pop("step_k8s_config")
    with pytest.raises(Exception, match="step_k8s_confg"):
        render_step_jobs(K8S_PIPELINE_JOB, run_config)


# ---- the executor itself, launching against a stand-in Kubernetes API ----------------------------------------------


class _StandInApi(BaseHTTPRequestHandler):
    """Records each request and refuses it (403), so the executor stops after sending its first Job."""

    def _refuse(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.server.requests.append((self.command, self.path, body))  # type: ignore[attr-defined]
        status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403}
        payload = json.dumps(status).encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = _refuse

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def kubernetes_api(tmp_path: Path) -> Iterator[tuple[ThreadingHTTPServer, Path]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StandInApi)
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    cluster = {"server": f"http://127.0.0.1:{server.server_port}"}
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "stand-in", "cluster": cluster}],
                "users": [{"name": "nobody", "user": {"token": "no-token"}}],
                "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "nobody"}}],
                "current-context": "stand-in",
            }
        ),
        encoding="utf-8",
    )
    yield server, kubeconfig
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def k8s_pipeline_job():  # type: ignore[no-untyped-def]
    """The job as the executor's run reconstructs it (execute_job needs a reconstructable job)."""
    return K8S_PIPELINE_JOB


@pytest.mark.parametrize("step", ["ingested_batch", "retrained_model", "compressed_model"])
def test_the_rendered_job_is_the_one_the_executor_sends(
    step: str, run_config: dict, kubernetes_api: tuple[ThreadingHTTPServer, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, kubeconfig = kubernetes_api
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    # Every layer at once: launcher, executor settings, step_k8s_config, the op's tag and a per-step override.
    run_config["execution"]["config"]["per_step_k8s_config"] = {
        "retrained_model": {"container_config": {"resources": {"limits": {"memory": "8Gi"}}}}
    }
    launcher = {**LAUNCHER, "load_incluster_config": False, "kubeconfig_file": str(kubeconfig)}
    overrides = {"run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": launcher}}
    with instance_for_test(overrides=overrides) as instance:
        instance.add_dynamic_partitions(BATCHES_PARTITIONS_NAME, ["day_000.csv"])
        result = execute_job(
            reconstructable(k8s_pipeline_job),
            instance,
            run_config=run_config,
            tags={"dagster/partition": "day_000.csv"},
            asset_selection=[AssetKey(step)],
            raise_on_error=False,
        )
    assert not result.success  # the stand-in API refused the Job
    ((path, sent),) = [(path, body) for method, path, body in server.requests if method == "POST"]
    assert path == "/apis/batch/v1/namespaces/green-pipeline/jobs"

    expected = render_step_jobs(K8S_PIPELINE_JOB, run_config, run_id=result.run_id, launcher=LAUNCHER)[step]
    assert expected["metadata"].pop("namespace") == "green-pipeline"
    # The one part left out of the rendering: the step's serialized arguments.
    env = container(sent)["env"]
    assert env[0]["name"] == "DAGSTER_COMPRESSED_EXECUTE_STEP_ARGS"
    container(sent)["env"] = env[1:]
    assert sent == expected


# ---- deploy/helm/values.yaml -----------------------------------------------------------------------------------------


def test_the_helm_values_deploy_the_image_settings_and_limits_of_the_run_config_and_instance(run_config: dict) -> None:
    values = yaml.safe_load(HELM_VALUES.read_text(encoding="utf-8"))
    executor = run_config["execution"]["config"]
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    image = deployment["image"]
    assert f"{image['repository']}:{image['tag']}" == executor["job_image"]
    assert image["pullPolicy"] == executor["image_pull_policy"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "green_pipeline.app.definitions"]
    assert f"EXPOSE {deployment['port']}" in (REPO / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    assert deployment["env"] == {"GREEN_PIPELINE_EXECUTOR": "k8s"}
    assert f"GREEN_PIPELINE_EXECUTOR={deployment['env']['GREEN_PIPELINE_EXECUTOR']}" in executor["env_vars"]
    secrets = [secret["name"] for secret in deployment["envSecrets"]]
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    assert secrets == [s["name"] for s in launcher["config"]["k8sRunLauncher"]["envSecrets"]] == executor["env_secrets"]
    assert secrets == LAUNCHER["env_secrets"]
    assert values["global"]["postgresqlSecretName"] == LAUNCHER["postgres_password_secret"]
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"  # the driver the image has

    instance = yaml.safe_load((REPO / "dagster.yaml").read_text(encoding="utf-8"))["concurrency"]
    concurrency = values["concurrency"]
    assert concurrency["enabled"] is True
    assert concurrency["pools"] == {
        "defaultLimit": instance["pools"]["default_limit"],
        "granularity": instance["pools"]["granularity"],
    }
    assert concurrency["runs"] == {
        "maxConcurrentRuns": instance["runs"]["max_concurrent_runs"],
        "tagConcurrencyLimits": instance["runs"]["tag_concurrency_limits"],
    }
    # The chart refuses run limits set both here and on its run coordinator.
    assert "dagsterDaemon" not in values
