"""Two CPU-bound metered steps run in parallel processes are each charged their own CPU time, not the machine's.

Before the process attribution each step's codecarbon tracker measured the whole machine, so the parallel pair
counted the machine twice. Each step here also reads its own CPU clock around the work: a reference that sees the
same window as the meter, so the comparison holds however busy the machine is (on a loaded machine a fixed amount
of work takes more CPU seconds, so comparing the parallel run with a later run one step at a time does not).
The steps run in processes forked from a server that imported the project once (a multiprocess executor option),
which keeps the test to about half a minute.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
from dagster import (
    DagsterEventType,
    DagsterInstance,
    Definitions,
    JobDefinition,
    Output,
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


def burn() -> Output[str]:
    """The work, with the CPU seconds this process spent on it by its own clock."""
    started = time.process_time()
    digest = b""
    for i in range(BURN_ROUNDS):
        digest = hashlib.sha256(digest + i.to_bytes(4, "little")).digest()
    return Output(digest.hex(), metadata={"own_cpu_s": time.process_time() - started})


@metered_asset()
def burn_a() -> Output[str]:
    return burn()


@metered_asset()
def burn_b() -> Output[str]:
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


def kwh_per_own_cpu_s(blocks: dict[str, dict[str, Any]]) -> float:
    """CPU energy charged to the blocks together, per CPU second their processes spent on the work."""
    return sum(block["cpu_energy_kwh"] for block in blocks.values()) / sum(
        block["own_cpu_s"] for block in blocks.values()
    )


def test_parallel_steps_are_charged_what_they_use_as_when_one_at_a_time(runs: tuple[dict, dict]) -> None:
    parallel, alone = runs
    # They really ran at once (most of the shorter block), and really one after the other in the second run.
    assert overlap_s(parallel) > 0.5 * min(block["duration_s"] for block in parallel.values())
    assert overlap_s(alone) < 0
    # Each CPU second of the work costs the same whether the other step ran beside it or not: the pair is not
    # charged the machine twice, nor each other's work. (The meter also sees the step's few milliseconds of
    # bookkeeping around the work, far inside the tolerance.)
    assert kwh_per_own_cpu_s(alone) > 0
    assert kwh_per_own_cpu_s(parallel) == pytest.approx(kwh_per_own_cpu_s(alone), rel=0.1)
    for block in [*parallel.values(), *alone.values()]:
        assert block["energy_status"] == "estimated"
        assert block["energy_kwh"] == pytest.approx(block["cpu_energy_kwh"] + block["ram_energy_kwh"])


def test_every_materialization_says_how_its_energy_was_attributed(runs: tuple[dict, dict]) -> None:
    for block in [*runs[0].values(), *runs[1].values()]:
        method = block["energy_method"]
        assert "CPU = this step's CPU seconds" in method and "RAM = its resident memory" in method
        assert "Not attributed: idle power" in method
