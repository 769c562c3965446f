"""The code location loads as Dagster loads it, and every asset is energy-metered."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import Definitions

from green_pipeline.app.definitions import defs
from green_pipeline.assets.metering import ENERGY_RESOURCE_PARAM

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_definitions_are_loadable_and_every_job_resolves() -> None:
    Definitions.validate_loadable(defs)
    for name in ("green_pipeline_job", "monitoring_job", "retraining_job"):
        assert defs.resolve_job_def(name).name == name


def test_every_asset_requires_the_energy_resource() -> None:
    for assets_def in defs.assets:
        assert ENERGY_RESOURCE_PARAM in assets_def.required_resource_keys, assets_def.key


def test_dagster_cli_validates_the_code_location_with_no_flags(tmp_path: Path) -> None:
    dagster = Path(sys.executable).with_name("dagster")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    result = subprocess.run(
        [str(dagster), "definitions", "validate"], cwd=REPO, env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "green_pipeline" in result.stdout + result.stderr


def test_instance_config_serializes_model_runs_and_training_steps(tmp_path: Path) -> None:
    from dagster import DagsterInstance

    shutil.copyfile(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        config = instance.get_concurrency_config()
        assert config.pool_config.default_pool_limit == 1
        assert {
            "key": "green_pipeline/lane",
            "value": "model",
            "limit": 1,
        } in config.run_queue_config.tag_concurrency_limits
        assert not instance.telemetry_enabled
    retrained = next(a for a in defs.assets if a.key.to_user_string() == "retrained_model")
    assert retrained.op.pool == "training"
