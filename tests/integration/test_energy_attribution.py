"""Two CPU-bound metered steps run in parallel processes report, together, what they report one at a time.

Before the process attribution each step's codecarbon tracker measured the whole machine, so the parallel pair
counted the machine twice. The steps run in processes forked from a server that imported the project once (a
multiprocess executor option), which keeps the test to about half a minute.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from dagster import (
    DagsterEventType,
    DagsterInstance,
    Definitions,
    JobDefinition,
    define_asset_job,
    execute_job,
    instance_for_test,
    multiprocess_executor,
    reconstructable,
)

from green_pipeline.assets.metering import metered_asset
from green_pipeline.orchestration.resources import EnergyResource

#: About 3 s of single-threaded CPU work here; a fixed amount of work, so its CPU time does not depend on timing.
BURN_ROUNDS = 5_000_000


def burn() -> str:
    digest = b""
    for i in range(BURN_ROUNDS):
        digest = hashlib.sha256(digest + i.to_bytes(4, "little")).digest()
    return digest.hex()


@metered_asset()
def burn_a() -> str:
    return burn()


@metered_asset()
def burn_b() -> str:
    return burn()


def burn_job() -> JobDefinition:
    """Module-level, so each step process rebuilds it from this file."""
    defs = Definitions(
        assets=[burn_a, burn_b],
        resources={"energy": EnergyResource()},
        jobs=[define_asset_job("burn_job", executor_def=multiprocess_executor)],
    )
    return defs.resolve_job_def("burn_job")


def measured_blocks(instance: DagsterInstance, processes: int) -> dict[str, dict[str, Any]]:
    """Run both steps with at most ``processes`` at once; per asset: its energy and when its measured block ran."""
    # A fork server that has imported the project once, instead of every step process importing it (~4 s each).
    start_method = {"forkserver": {"preload_modules": ["green_pipeline.assets.metering"]}}
    run_config = {"execution": {"config": {"max_concurrent": processes, "start_method": start_method}}}
    with execute_job(reconstructable(burn_job), instance, run_config=run_config) as result:
        assert result.success
        records = instance.get_records_for_run(result.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records
    blocks = {}
    for record in records:
        materialization = record.event_log_entry.asset_materialization
        metadata = {key: value.value for key, value in materialization.metadata.items()}
        end = record.event_log_entry.timestamp  # stored right after the block's outputs
        blocks[materialization.asset_key.to_user_string()] = {
            **metadata,
            "start": end - metadata["duration_s"],
            "end": end,
        }
    assert set(blocks) == {"burn_a", "burn_b"}
    return blocks


def overlap_s(blocks: dict[str, dict[str, Any]]) -> float:
    a, b = blocks["burn_a"], blocks["burn_b"]
    return min(a["end"], b["end"]) - max(a["start"], b["start"])


@pytest.fixture(scope="module")
def runs() -> Iterator[tuple[dict, dict]]:
    with instance_for_test() as instance:
        yield measured_blocks(instance, processes=2), measured_blocks(instance, processes=1)


def test_parallel_steps_add_up_to_what_they_use_one_at_a_time(runs: tuple[dict, dict]) -> None:
    parallel, alone = runs
    # They really ran at once (most of the shorter block), and really one after the other in the second run.
    assert overlap_s(parallel) > 0.5 * min(block["duration_s"] for block in parallel.values())
    assert overlap_s(alone) < 0

    total = lambda blocks, key: sum(block[key] for block in blocks.values())  # noqa: E731
    assert total(parallel, "energy_kwh") == pytest.approx(total(alone, "energy_kwh"), rel=0.15)
    # The CPU part is the same work's CPU time, whatever else runs; the RAM part follows each block's wall time.
    assert total(parallel, "cpu_energy_kwh") == pytest.approx(total(alone, "cpu_energy_kwh"), rel=0.1)
    assert all(block["energy_status"] == "estimated" for block in [*parallel.values(), *alone.values()])


def test_every_materialization_says_how_its_energy_was_attributed(runs: tuple[dict, dict]) -> None:
    for block in [*runs[0].values(), *runs[1].values()]:
        method = block["energy_method"]
        assert "CPU = this step's CPU seconds" in method and "RAM = its resident memory" in method
        assert "Not attributed: idle power" in method
