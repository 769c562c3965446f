"""A job whose first step fails once, for tests/integration/test_dask.py: Dask workers import it by module name."""

from pathlib import Path

from dagster import Config, Definitions, JobDefinition, RetryPolicy, asset, define_asset_job

from green_pipeline.assets.dask_executor import dask_executor


class FlakyConfig(Config):
    marker: str


@asset
def flaky(config: FlakyConfig) -> int:
    """Fails on the first attempt (no marker file yet), succeeds on the next."""
    marker = Path(config.marker)
    if not marker.exists():
        marker.write_text("attempted", encoding="utf-8")
        raise ConnectionError("transient failure on the first attempt")
    return 1


@asset
def downstream(flaky: int) -> int:
    return flaky + 1


defs = Definitions(
    assets=[flaky, downstream],
    jobs=[define_asset_job("flaky_job", executor_def=dask_executor, op_retry_policy=RetryPolicy(max_retries=1))],
)


def flaky_job() -> JobDefinition:
    return defs.resolve_job_def("flaky_job")
