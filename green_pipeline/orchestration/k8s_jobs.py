"""The Kubernetes Jobs that ``k8s_job_executor`` would launch for a run's steps, rendered without a cluster.

Each Job is built by dagster-k8s's own ``construct_dagster_k8s_job`` from what the executor reads: the run config's
``execution.config`` (checked and resolved by Dagster's ``validate_run_config``), the instance's K8sRunLauncher
settings when given, and each op's ``dagster-k8s/config`` tag. The layers are merged in the executor's order
(launcher, executor settings and ``step_k8s_config``, the op's tag, ``per_step_k8s_config[op]``), each one deep-merged
over the previous ones unless it sets ``merge_behavior: SHALLOW`` (``dagster_k8s.K8sConfigMergeBehavior``). Left out:
``DAGSTER_COMPRESSED_EXECUTE_STEP_ARGS``, the step's arguments that the executor serializes from the run's plan.
tests/integration/test_k8s_jobs.py compares the result with the Job the executor itself sends to a stand-in API server.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from dagster import JobDefinition, job, validate_run_config
from dagster_k8s import DagsterK8sJobConfig, K8sConfigMergeBehavior, construct_dagster_k8s_job
from dagster_k8s.job import UserDefinedDagsterK8sConfig, get_k8s_job_name, get_user_defined_k8s_config
from kubernetes.client import ApiClient  # type: ignore[import-untyped]

from green_pipeline.errors import InvalidConfigError

#: What a step pod runs: the code server's ``dagster`` entry point; the step's arguments come in an env variable.
STEP_COMMAND = ("dagster", "api", "execute_step")
#: Stands for the run id, which names the Jobs and labels them, when no run exists yet.
EXAMPLE_RUN_ID = "00000000-0000-0000-0000-000000000000"
#: The K8sRunLauncher's namespace when neither it nor the executor names one.
DEFAULT_NAMESPACE = "default"

# Lists that a deep merge replaces rather than appends to (a container's command and args).
_WHOLE_LISTS = frozenset({"command", "args"})


def render_step_jobs(
    job_def: JobDefinition,
    run_config: Mapping[str, Any],
    *,
    run_id: str = EXAMPLE_RUN_ID,
    launcher: Mapping[str, Any] | None = None,
    image: str | None = None,
    code_location: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Each step's Job by step key, as the Kubernetes API receives it (camelCase, with ``metadata.namespace``).

    ``launcher`` is the instance's K8sRunLauncher config (``run_launcher.config`` of dagster.yaml), applied to step
    pods before the executor's settings; ``image`` is the user deployment's image, used when neither sets one.
    """
    executor = _executor_settings(job_def, run_config)
    base = dict(launcher or {})
    defaults = _merge(
        _merge(_settings_layer(base), _layer(base.get("run_k8s_config", {}))),
        _merge(_settings_layer(executor), _layer(executor.get("step_k8s_config", {}))),
    )
    job_config = DagsterK8sJobConfig(
        job_image=executor.get("job_image") or base.get("job_image") or image,
        dagster_home=base.get("dagster_home"),
        instance_config_map=base.get("instance_config_map"),
        postgres_password_secret=base.get("postgres_password_secret"),
    )
    if not job_config.job_image:
        raise InvalidConfigError(
            "No image for the step pods: set execution.config.job_image in the run config, or pass the user "
            "deployment's image."
        )
    namespace = executor.get("job_namespace") or base.get("job_namespace") or DEFAULT_NAMESPACE
    per_step = executor.get("per_step_k8s_config", {})
    jobs = {}
    for node in job_def.graph.nodes:
        config = _merge(_merge(defaults, get_user_defined_k8s_config(node.tags)), _layer(per_step.get(node.name, {})))
        labels = {"dagster/job": job_def.name, "dagster/op": node.name, "dagster/run-id": run_id}
        if code_location:
            labels["dagster/code-location"] = code_location
        name = f"dagster-step-{get_k8s_job_name(run_id, node.name)}"
        body = ApiClient().sanitize_for_serialization(
            construct_dagster_k8s_job(
                job_config=job_config,
                args=list(STEP_COMMAND),
                job_name=name,
                pod_name=name,
                component="step_worker",
                user_defined_k8s_config=config,
                labels=labels,
                env_vars=[
                    {"name": "DAGSTER_RUN_JOB_NAME", "value": job_def.name},
                    {"name": "DAGSTER_RUN_STEP_KEY", "value": node.name},
                ],
            )
        )
        body["metadata"]["namespace"] = namespace
        jobs[node.name] = body
    return jobs


def _executor_settings(job_def: JobDefinition, run_config: Mapping[str, Any]) -> dict[str, Any]:
    """The run config's executor settings, checked and resolved (``{env: ...}``, defaults) by Dagster."""
    executor_def = job_def.executor_def
    if executor_def.name != "k8s":
        raise InvalidConfigError(
            f"{job_def.name} runs on the {executor_def.name!r} executor, not 'k8s': load the code location with "
            "GREEN_PIPELINE_EXECUTOR=k8s."
        )

    # A job of no ops on the same executor: only the execution section is checked, so rendering needs neither the
    # resources' configuration nor the secrets it reads from the environment.
    @job(name=f"{job_def.name}_executor", executor_def=executor_def)
    def executor_only() -> None:
        pass

    resolved = validate_run_config(executor_only, {"execution": run_config.get("execution", {})})
    return dict(resolved["execution"][executor_def.name])


def _layer(raw: Mapping[str, Any]) -> UserDefinedDagsterK8sConfig:
    """One layer of raw Kubernetes config, its field names made snake_case as dagster-k8s does."""
    return UserDefinedDagsterK8sConfig.from_dict(raw)


def _settings_layer(settings: Mapping[str, Any]) -> UserDefinedDagsterK8sConfig:
    """The launcher's or executor's named settings as the raw config they stand for."""
    container: dict[str, Any] = {}
    pod_spec: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    for key in ("volume_mounts", "resources", "image_pull_policy", "security_context"):
        if settings.get(key):
            container[key] = settings[key]
    for key in ("image_pull_secrets", "volumes", "service_account_name", "scheduler_name"):
        if settings.get(key):
            pod_spec[key] = settings[key]
    if settings.get("labels"):
        metadata["labels"] = settings["labels"]
    env_from = [{"config_map_ref": {"name": name}} for name in settings.get("env_config_maps") or ()]
    env_from += [{"secret_ref": {"name": name}} for name in settings.get("env_secrets") or ()]
    if env_from:
        container["env_from"] = env_from
    if settings.get("env_vars"):
        container["env"] = [_env_var(entry) for entry in settings["env_vars"]]
    return _layer(
        {
            "container_config": container,
            "pod_spec_config": pod_spec,
            "pod_template_spec_metadata": metadata,
            "job_metadata": metadata,
        }
    )


def _env_var(entry: str) -> dict[str, str]:
    """``NAME=value``, or ``NAME`` alone: its value in this process, as the executor reads it in the run's pod."""
    name, sep, value = entry.partition("=")
    if sep:
        return {"name": name, "value": value}
    if name not in os.environ:
        raise InvalidConfigError(f"env_vars names {name}, which is not set in this process: give NAME=value.")
    return {"name": name, "value": os.environ[name]}


def _merge(onto: UserDefinedDagsterK8sConfig, top: UserDefinedDagsterK8sConfig) -> UserDefinedDagsterK8sConfig:
    """``top`` over ``onto``, deep or shallow as ``top`` says (dagster_k8s.K8sConfigMergeBehavior)."""
    below, above = copy.deepcopy(onto.to_dict()), copy.deepcopy(top.to_dict())
    if top.merge_behavior is K8sConfigMergeBehavior.SHALLOW:
        merged = {key: {**old, **above[key]} if isinstance(old, dict) else above[key] for key, old in below.items()}
    else:
        merged = _deep_merge(below, above)
    return UserDefinedDagsterK8sConfig.from_dict(merged)


def _deep_merge(onto: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Dictionaries merged key by key, lists appended without repeating an item, anything else replaced."""
    for key, value in top.items():
        if key not in onto:
            onto[key] = value
        elif isinstance(value, list) and key not in _WHOLE_LISTS:
            onto[key] = _unique([*onto[key], *value])
        elif isinstance(value, dict):
            onto[key] = _deep_merge(onto[key], value)
        else:
            onto[key] = value
    return onto


def _unique(items: Sequence[Any]) -> list[Any]:
    seen: set[str] = set()
    kept = []
    for item in items:
        fingerprint = json.dumps(item, sort_keys=True, default=str)
        if fingerprint not in seen:
            seen.add(fingerprint)
            kept.append(item)
    return kept
