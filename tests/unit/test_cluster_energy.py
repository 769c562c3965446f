"""Energy on a Dask cluster: each worker process meters itself for the step, the step is charged its own share plus
the workers', a local cluster's workers are never counted twice, and a worker that left makes the step unmeasured.

Runs on a real local cluster of two worker processes (one per module). Busy work is measured in CPU seconds of the
worker's task thread, so it is the same amount of work on a quiet or a loaded machine.
"""

from __future__ import annotations

import contextvars
import importlib
import json
import os
import pickle
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest
from distributed import Client, LocalCluster

from green_pipeline.distributed.metering import (
    CLUSTER_ENERGY_KWH,
    CLUSTER_ENERGY_STATUS,
    CLUSTER_HOSTS,
    CLUSTER_UNMEASURED_REASON,
    CLUSTER_WORKERS,
    ClusterEnergy,
    WorkerEnergy,
    metered_on_cluster,
)
from green_pipeline.energy.measurement import (
    JOULES_PER_KWH,
    EnergyReport,
    EnergySettings,
    EnergyStatus,
    charge_elsewhere,
    measure_energy,
)
from green_pipeline.energy.power_model import power_model
from green_pipeline.errors import InvalidConfigError

SETTINGS = EnergySettings(country_iso_code="FRA")
#: CPU seconds of busy work per worker; the step's own share must stay far below it.
BUSY_CPU_S = 0.6
DEADLINE_S = 30
#: The step's own share may exceed this process's CPU time by psutil's clock ticks and the idle multiprocessing
#: resource tracker; one worker's work (BUSY_CPU_S) would far exceed it.
OWN_SLACK_S = 0.1


def _busy_task() -> Callable[[float], float]:
    """A task defined here, not at module level: sent to the workers by value (they cannot import tests)."""

    def busy(cpu_s: float) -> float:
        """Hashes until this thread has spent ``cpu_s`` of CPU time; returns the CPU time spent."""
        import hashlib
        import time

        started, digest = time.thread_time(), b""
        while time.thread_time() - started < cpu_s:
            for _ in range(1000):
                digest = hashlib.sha256(digest).digest()
        return time.thread_time() - started

    return busy


busy = _busy_task()


def cpu_seconds(energy_kwh: float | None) -> float:
    """CPU seconds behind an estimated CPU figure (this machine has no RAPL counters: test_energy.py)."""
    assert energy_kwh is not None
    return energy_kwh * JOULES_PER_KWH / power_model("FRA", None, None).cpu_w_per_thread


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[LocalCluster, Client]]:
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1") as c,
        Client(c, set_as_default=False) as client,
    ):
        warm_up(client)
        yield c, client


def warm_up(client: Client) -> None:
    """Two workers up, each having imported the metering module. A worker imports it at its first metered step,
    before it is left out of the step's own share: real work, charged once, to that step. Imported here, the tests
    see the steady state."""
    client.wait_for_workers(2)
    client.run(importlib.import_module, metered_on_cluster.__module__)


@pytest.fixture
def client(cluster: tuple[LocalCluster, Client]) -> Client:
    return cluster[1]


def busy_on_each_worker(client: Client) -> dict[str, float]:
    """``BUSY_CPU_S`` of CPU on every worker, one task pinned to each; the CPU each task spent, by worker."""
    workers = sorted(client.scheduler_info()["workers"])
    futures = [client.submit(busy, BUSY_CPU_S, workers=[worker], pure=False) for worker in workers]
    return dict(zip(workers, client.gather(futures), strict=True))


def test_the_step_is_charged_its_own_share_plus_each_workers(client: Client) -> None:
    own = time.process_time()
    with measure_energy(SETTINGS) as step, metered_on_cluster(client, SETTINGS) as meter:
        spent = busy_on_each_worker(client)
    own = time.process_time() - own

    assert meter.energy is not None and step.report is not None and step.local is not None
    workers = {part.worker: part for part in meter.energy.workers}
    assert set(workers) == set(spent)
    assert meter.energy.hosts == [socket.gethostname()]
    pids = client.run(os.getpid)
    for address, part in workers.items():
        assert part.host == socket.gethostname() and part.pid == pids[address]
        assert part.report.status is EnergyStatus.ESTIMATED
        # The worker's block holds its task's CPU (and the little the worker spent beside it), at the model's rate.
        assert spent[address] <= cpu_seconds(part.report.cpu_energy_kwh) + 0.02 < spent[address] + 0.5

    total = meter.energy.total()
    assert total.energy_kwh == pytest.approx(sum(part.report.energy_kwh or 0.0 for part in workers.values()))
    report, local = step.report, step.local
    assert report.status is EnergyStatus.ESTIMATED
    assert report.energy_kwh == pytest.approx((local.energy_kwh or 0.0) + (total.energy_kwh or 0.0))
    assert report.cpu_energy_kwh == pytest.approx((local.cpu_energy_kwh or 0.0) + (total.cpu_energy_kwh or 0.0))
    assert report.emissions_kg_co2eq == pytest.approx(
        (local.emissions_kg_co2eq or 0.0) + (total.emissions_kg_co2eq or 0.0)
    )
    # The workers are children of this process, left out of its own share while they meter themselves: that share
    # is this process's CPU time (the client, the scheduler and the nannies run here), none of the workers'.
    assert cpu_seconds(local.cpu_energy_kwh) < own + OWN_SLACK_S
    assert f"Plus 2 Dask worker(s) on host(s) {socket.gethostname()}: estimated" in report.method

    metadata = json.loads(json.dumps(meter.energy.as_metadata()))
    assert metadata[CLUSTER_ENERGY_STATUS] == "estimated"
    assert metadata[CLUSTER_ENERGY_KWH] == pytest.approx(total.energy_kwh)
    assert metadata[CLUSTER_HOSTS] == [socket.gethostname()]
    assert [row["worker"] for row in metadata[CLUSTER_WORKERS]] == sorted(spent)
    assert all(row["energy_kwh"] > 0 and row["unmeasured_reason"] is None for row in metadata[CLUSTER_WORKERS])
    assert CLUSTER_UNMEASURED_REASON not in metadata


def test_a_worker_closed_before_the_end_makes_its_part_and_the_step_unmeasured(
    cluster: tuple[LocalCluster, Client],
) -> None:
    local_cluster, client = cluster
    leaving = local_cluster.workers[1].worker_address
    leaving_pid = client.run(os.getpid)[leaving]
    own = time.process_time()
    try:
        with measure_energy(SETTINGS) as step, metered_on_cluster(client, SETTINGS) as meter:
            spent = busy_on_each_worker(client)
            local_cluster.scale(1)
            # The worker process ends and is reaped into this process's counters of finished children.
            _wait_for(lambda: not psutil.pid_exists(leaving_pid), "the closed worker's process to end")
        own = time.process_time() - own
    finally:
        local_cluster.scale(2)
        warm_up(client)

    assert meter.energy is not None and step.report is not None and step.local is not None
    parts = {part.worker: part for part in meter.energy.workers}
    assert set(parts) == set(spent)
    gone = parts[leaving].report
    assert gone.status is EnergyStatus.UNMEASURED and gone.energy_kwh is None
    assert "left the cluster before the step's metering ended" in (gone.unmeasured_reason or "")
    stayed = next(part for address, part in parts.items() if address != leaving)
    assert stayed.report.status is EnergyStatus.ESTIMATED

    total = meter.energy.total()
    assert total.status is EnergyStatus.UNMEASURED and total.energy_kwh is None
    assert f"Dask worker {leaving}" in (total.unmeasured_reason or "") and stayed.worker not in (
        total.unmeasured_reason or ""
    )
    report = step.report
    assert report.status is EnergyStatus.UNMEASURED and report.energy_kwh is None
    assert leaving in (report.unmeasured_reason or "")
    metadata = meter.energy.as_metadata()
    assert metadata[CLUSTER_ENERGY_STATUS] == "unmeasured" and CLUSTER_ENERGY_KWH not in metadata
    assert leaving in str(metadata[CLUSTER_UNMEASURED_REASON])
    # Reaped while metered separately, the worker's CPU time did not land in the step's own share.
    assert cpu_seconds(step.local.cpu_energy_kwh) < own + OWN_SLACK_S


def test_steps_metering_one_cluster_at_once_share_it_and_an_ended_ones_block_is_closed(client: Client) -> None:
    other_step = contextvars.copy_context()  # another step's context, as a thread or process of its own would be
    with Client(client.scheduler_info()["address"], set_as_default=False) as other_client:
        other = metered_on_cluster(other_client, SETTINGS)
        other_step.run(other.__enter__)
        try:
            with metered_on_cluster(client, SETTINGS) as shared:
                busy_on_each_worker(client)
        finally:
            other_step.run(other.__exit__, None, None, None)
    assert shared.energy is not None
    assert all(
        "shared its process with 1 block(s) open at once on this Dask worker" in part.report.method
        for part in shared.energy.workers
    )

    with Client(client.scheduler_info()["address"], set_as_default=False) as ended_client:
        ended = metered_on_cluster(ended_client, SETTINGS)
        other_step.run(ended.__enter__)
    ended_id = ended_client.id
    _wait_for(lambda: ended_id not in client.run_on_scheduler(_clients), "the scheduler to drop the ended client")
    try:
        with metered_on_cluster(client, SETTINGS) as alone:
            busy_on_each_worker(client)
    finally:
        other_step.run(ended.__exit__, None, None, None)
    assert alone.energy is not None
    assert all(part.report.status is EnergyStatus.ESTIMATED for part in alone.energy.workers)
    assert not any("shared its process" in part.report.method for part in alone.energy.workers)


def test_metering_one_cluster_twice_in_one_step_is_refused(client: Client) -> None:
    with (
        metered_on_cluster(client, SETTINGS),
        pytest.raises(InvalidConfigError, match="not nested"),
        metered_on_cluster(client, SETTINGS),
    ):
        pass


def test_disabled_metering_leaves_the_workers_alone(client: Client) -> None:
    settings = EnergySettings(enabled=False)
    with measure_energy(settings) as step, metered_on_cluster(client, settings) as meter:
        pass
    assert meter.energy is None
    assert step.report is not None and step.report.unmeasured_reason == "energy measurement is disabled"


def _scheduler_clients() -> Callable[[Any], list[str]]:
    def clients(dask_scheduler: Any) -> list[str]:
        return list(dask_scheduler.clients)

    return clients


_clients = _scheduler_clients()


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


# Without a cluster: the sum's rules, charging a block, and processes left out of this process's meter.


def _report(status: EnergyStatus, energy_kwh: float | None, reason: str | None = None) -> EnergyReport:
    figures = status.has_figures
    return EnergyReport(
        status=status,
        duration_s=1.0,
        method=f"{status.value}: test",
        energy_kwh=energy_kwh,
        cpu_energy_kwh=energy_kwh,
        ram_energy_kwh=0.0 if figures else None,
        gpu_energy_kwh=0.0 if figures else None,
        emissions_kg_co2eq=energy_kwh * 0.05 if energy_kwh is not None else None,
        carbon_intensity_g_per_kwh=50.0 if figures else None,
        unmeasured_reason=reason,
    )


def test_the_cluster_sum_is_unmeasured_when_a_part_is_and_never_guessed() -> None:
    measured = WorkerEnergy("tcp://a:1", "a", 10, _report(EnergyStatus.MEASURED, 2.0))
    estimated = WorkerEnergy("tcp://b:1", "b", 11, _report(EnergyStatus.ESTIMATED, 3.0))
    lost = WorkerEnergy("tcp://c:1", "c", None, _report(EnergyStatus.UNMEASURED, None, "it left"))

    both = ClusterEnergy((measured, estimated)).total()
    assert both.status is EnergyStatus.ESTIMATED and both.energy_kwh == 5.0 and both.emissions_kg_co2eq == 0.25
    assert both.carbon_intensity_g_per_kwh == 50.0
    partial = ClusterEnergy((measured, lost, estimated))
    assert partial.total().status is EnergyStatus.UNMEASURED and partial.total().energy_kwh is None
    assert partial.total().unmeasured_reason == "Dask worker tcp://c:1 on c: it left"
    assert partial.hosts == ["a", "b", "c"] and partial.where() == "3 Dask worker(s) on host(s) a, b, c"
    assert partial.as_metadata()[CLUSTER_WORKERS][1] == {  # type: ignore[index]
        "worker": "tcp://c:1",
        "host": "c",
        "pid": None,
        "status": "unmeasured",
        "energy_kwh": None,
        "cpu_energy_kwh": None,
        "ram_energy_kwh": None,
        "duration_s": 1.0,
        "unmeasured_reason": "it left",
    }
    nothing = ClusterEnergy(()).total()
    assert nothing.status is EnergyStatus.UNMEASURED and "no Dask worker" in (nothing.unmeasured_reason or "")
    assert ClusterEnergy((), "scheduler gone").total().unmeasured_reason == "scheduler gone"


def test_energy_charged_elsewhere_goes_to_the_innermost_block_and_those_around_it() -> None:
    elsewhere = _report(EnergyStatus.ESTIMATED, 1e-3)
    with measure_energy(SETTINGS) as step:
        with measure_energy(SETTINGS) as attempt:
            charge_elsewhere(elsewhere, "1 Dask worker(s) on host(s) a")
        with measure_energy(SETTINGS) as uncharged:
            pass
    for block in (step, attempt):
        assert block.report is not None and block.local is not None
        assert block.report.energy_kwh == pytest.approx((block.local.energy_kwh or 0.0) + 1e-3)
        assert "Plus 1 Dask worker(s) on host(s) a: estimated: test" in block.report.method
    assert uncharged.report is uncharged.local
    charge_elsewhere(elsewhere, "nowhere")  # no block open: charged to nothing, and no failure

    with measure_energy(SETTINGS) as unmeasured:
        charge_elsewhere(_report(EnergyStatus.UNMEASURED, None, "it left"), "1 Dask worker(s) on host(s) a")
    assert unmeasured.report is not None and unmeasured.report.status is EnergyStatus.UNMEASURED
    assert unmeasured.report.energy_kwh is None
    assert unmeasured.report.unmeasured_reason == "1 Dask worker(s) on host(s) a: it left"


def test_reports_cross_the_wire_unchanged() -> None:
    report = _report(EnergyStatus.ESTIMATED, 1e-6)
    assert pickle.loads(pickle.dumps(report)) == report
