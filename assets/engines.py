"""The engines (Dagster executors) the batch jobs can run on: in process, on a Dask cluster, or as Kubernetes jobs.

The optional engines come from extras (``green-pipeline[dask]``, ``[k8s]``) and are imported only when chosen.
"""

from dagster import ExecutorDefinition, in_process_executor

from green_pipeline.errors import InvalidConfigError

EXECUTOR_ENV = "GREEN_PIPELINE_EXECUTOR"
ENGINES = ("in_process", "dask", "k8s")


def engine_executor(engine: str) -> ExecutorDefinition:
    """The executor of ``engine``, or an error naming the setting and the missing extra."""
    if engine not in ENGINES:
        raise InvalidConfigError(f"{EXECUTOR_ENV}={engine!r} is not one of {', '.join(ENGINES)}.")
    if engine == "in_process":
        return in_process_executor
    try:
        if engine == "dask":
            from green_pipeline.assets.dask_executor import dask_executor

            return dask_executor
        from dagster_k8s import k8s_job_executor
    except ImportError as exc:
        raise InvalidConfigError(
            f"{EXECUTOR_ENV}={engine}: {exc.name} is not installed; pip install 'green-pipeline[{engine}]'."
        ) from exc
    return k8s_job_executor
