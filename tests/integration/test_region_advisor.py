"""`green-pipeline regions` and the ledger's region table, over a small persistent instance with measured energy."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterInstance

from green_pipeline.app.definitions import defs
from green_pipeline.app.runner import run_config
from green_pipeline.carbon.regions import cloud_regions
from green_pipeline.orchestration.ledger import all_entries

pytestmark = pytest.mark.integration
CLI = str(Path(sys.executable).with_name("green-pipeline"))


def _refresh_ledger(instance: DagsterInstance, root: Path) -> dict:
    """One real energy_ledger run (its own step is metered), returning its metadata."""
    config = run_config({"artifacts": {"base_url": str(root / "artifacts")}})
    result = defs.resolve_job_def("energy_ledger_job").execute_in_process(instance=instance, run_config=config)
    assert result.success
    return {k: v.value for k, v in result.asset_materializations_for_node("energy_ledger")[0].metadata.items()}


def test_regions_ranks_gcp_and_prices_the_ledgers_measured_energy(tmp_path: Path) -> None:
    home = tmp_path / ".dagster"
    home.mkdir()
    with DagsterInstance.from_config(str(home)) as instance:
        _refresh_ledger(instance, tmp_path)
        measured = sum(e.energy_kwh for e in all_entries(instance) if e.energy_kwh is not None)
        assert measured > 0

        env = {**os.environ, "DAGSTER_HOME": str(home)}
        result = subprocess.run(
            [CLI, "regions", "--provider", "gcp", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["measured_energy_kwh"] == pytest.approx(measured) and report["unmeasured_steps"] == 0
        regions = report["regions"]
        assert len(regions) == len(cloud_regions("gcp")) and {r["provider"] for r in regions} == {"gcp"}
        assert [r["g_co2_per_kwh"] for r in regions] == sorted(r["g_co2_per_kwh"] for r in regions)
        for region in regions:
            assert region["emissions_kg_co2eq"] == pytest.approx(measured * region["g_co2_per_kwh"] / 1000)

        # The next ledger run shows the same advice for the cleanest regions of each provider.
        ledger = _refresh_ledger(instance, tmp_path)
    cleanest = regions[0]
    row = (
        f"| 1 | gcp | {cleanest['region']} | {cleanest['location']} | {cleanest['g_co2_per_kwh']:.0f} | "
        f"{cleanest['emissions_kg_co2eq'] * 1e3:.4g} |"
    )
    assert row in ledger["region_advice"]
    assert ledger["region_advice"].count("| 1 |") == 3  # aws, azure and gcp each have a cleanest region
