"""Energy of a step's work on a Dask cluster: each worker process meters itself while the step meters the cluster.

``metered_on_cluster`` opens a block in every worker process (``client.run``), like a step's own block: that
process's CPU time and memory (RAPL share where readable, else codecarbon's rates). On exit it closes them, sums the
workers' reports and charges the sum to the enclosing ``measure_energy`` block (``charge_elsewhere``), so the step's
``energy_kwh`` is its own process's share plus its workers'. A worker that left, joined meanwhile, or could not be
read is ``unmeasured`` with the reason, and so is the sum: never a guess. A worker's block charges the worker
process's whole usage while the step is open: steps metering the same workers at the same time split it equally
(as blocks on two threads of one process do), and the method says so. Blocks left open by a client that ended (a
step killed while metering) are closed by the next step that finds them, before it opens its own.

A local cluster's worker processes (and a nanny process of ours) are children of the step's process: while they are
metered here they are left out of the step's own share (``energy.meter.meter_separately``), so nothing counts twice.
Not attributed: a separate nanny process's own CPU time while it is left out, and the scheduler when it runs
elsewhere (a local cluster's scheduler runs in the step's process and is in its own share).

Metadata (``ClusterEnergy.as_metadata``, beside the step's own ``energy_*`` keys):
``cluster_energy_status``; ``cluster_energy_kwh`` (the workers' sum, only when every worker has a figure);
``cluster_unmeasured_reason``; ``cluster_hosts`` (hostnames, sorted); ``cluster_workers``: per worker ``worker``
(address), ``host``, ``pid``, ``status``, ``energy_kwh``, ``cpu_energy_kwh``, ``ram_energy_kwh``, ``duration_s``,
``unmeasured_reason`` (null where absent).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from itertools import count
from typing import Any

import psutil
from distributed import Client
from distributed.comm.addressing import get_address_host

from green_pipeline.energy.measurement import (
    EnergyReport,
    EnergySettings,
    EnergyStatus,
    OpenBlock,
    charge_elsewhere,
    close_block,
    complete_sum,
    open_block,
)
from green_pipeline.energy.meter import meter_separately
from green_pipeline.errors import InvalidConfigError

CLUSTER_ENERGY_STATUS = "cluster_energy_status"
CLUSTER_ENERGY_KWH = "cluster_energy_kwh"
CLUSTER_UNMEASURED_REASON = "cluster_unmeasured_reason"
CLUSTER_WORKERS = "cluster_workers"
CLUSTER_HOSTS = "cluster_hosts"
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerEnergy:
    """One worker's part: its address, hostname (its address's host when it never answered), pid and report."""

    worker: str
    host: str
    pid: int | None
    report: EnergyReport

    def as_metadata(self) -> dict[str, object]:
        report = self.report
        return {
            "worker": self.worker,
            "host": self.host,
            "pid": self.pid,
            "status": report.status.value,
            "energy_kwh": report.energy_kwh,
            "cpu_energy_kwh": report.cpu_energy_kwh,
            "ram_energy_kwh": report.ram_energy_kwh,
            "duration_s": report.duration_s,
            "unmeasured_reason": report.unmeasured_reason,
        }


@dataclass(frozen=True)
class ClusterEnergy:
    """The workers' parts of one metered block; ``failure`` says why their sum cannot stand (no worker could be
    metered, or the workers could not be left out of the step's own share)."""

    workers: tuple[WorkerEnergy, ...]
    failure: str | None = None

    @property
    def hosts(self) -> list[str]:
        return sorted({worker.host for worker in self.workers})

    def where(self) -> str:
        """The parts, as ``charge_elsewhere`` names them in the step's ``energy_method``."""
        return f"{len(self.workers)} Dask worker(s) on host(s) {', '.join(self.hosts) or '(none)'}"

    def total(self) -> EnergyReport:
        """The workers' sum; ``unmeasured`` (no figures, the reason naming the workers) if any part is or none is."""
        reports = [worker.report for worker in self.workers]
        duration = max((report.duration_s for report in reports), default=0.0)
        status = EnergyStatus.of_total(report.status for report in reports)
        if self.failure is not None or not status.has_figures:
            reasons = [self.failure] if self.failure else []
            reasons += [
                f"Dask worker {worker.worker} on {worker.host}: {worker.report.unmeasured_reason}"
                for worker in self.workers
                if not worker.report.has_figures
            ]
            reason = "; ".join(reasons) or "no Dask worker was connected, so none was metered"
            return _unmeasured(reason, duration)
        intensities = {report.carbon_intensity_g_per_kwh for report in reports}
        return EnergyReport(
            status=status,
            duration_s=duration,
            method=f"{status.value}: the sum of each worker process's own block. {self._methods()}",
            energy_kwh=complete_sum(report.energy_kwh for report in reports),
            cpu_energy_kwh=complete_sum(report.cpu_energy_kwh for report in reports),
            ram_energy_kwh=complete_sum(report.ram_energy_kwh for report in reports),
            gpu_energy_kwh=complete_sum(report.gpu_energy_kwh for report in reports),
            emissions_kg_co2eq=complete_sum(report.emissions_kg_co2eq for report in reports),
            carbon_intensity_g_per_kwh=intensities.pop() if len(intensities) == 1 else None,
            country_iso_code=reports[0].country_iso_code,
            region=reports[0].region,
        )

    def _methods(self) -> str:
        """Each distinct worker method once, with the workers it applies to (workers of one host share one)."""
        by_method: dict[str, list[str]] = {}
        for worker in self.workers:
            by_method.setdefault(worker.report.method, []).append(worker.worker)
        return " ".join(f"Worker(s) {', '.join(workers)}: {method}" for method, workers in by_method.items())

    def as_metadata(self) -> dict[str, object]:
        """Plain JSON values for the step's metadata (keys in this module's docstring)."""
        total = self.total()
        metadata: dict[str, object] = {
            CLUSTER_ENERGY_STATUS: total.status.value,
            CLUSTER_HOSTS: self.hosts,
            CLUSTER_WORKERS: [worker.as_metadata() for worker in self.workers],
        }
        if total.has_figures:
            metadata[CLUSTER_ENERGY_KWH] = total.energy_kwh
        else:
            metadata[CLUSTER_UNMEASURED_REASON] = total.unmeasured_reason
        return metadata


@dataclass
class ClusterMeter:
    """What ``metered_on_cluster`` yields: ``energy`` is filled in on exit (None while open, or metering disabled)."""

    energy: ClusterEnergy | None = field(default=None)


#: Schedulers metered in this context: a nested ``metered_on_cluster`` on one of them would count its window twice.
_metering: ContextVar[frozenset[str]] = ContextVar("green_pipeline_metered_clusters", default=frozenset())


@contextmanager
def metered_on_cluster(client: Client, settings: EnergySettings) -> Iterator[ClusterMeter]:
    """Meter every worker of ``client``'s cluster during the ``with`` body and charge their sum to the enclosing
    ``measure_energy`` block. Start it once the workers are up (``client.wait_for_workers``): a worker that joins
    later is unmeasured. Exceptions of the body propagate after the metering ends; metering never fails the work."""
    meter = ClusterMeter()
    if not settings.enabled:
        yield meter
        return
    address = str(client.scheduler.address) if client.scheduler is not None else f"client {client.id}"
    if address in _metering.get():
        raise InvalidConfigError(
            f"metered_on_cluster is already open on the Dask scheduler {address} in this step: open it once around "
            "the work, not nested (the inner window would be charged twice)."
        )
    scope = _metering.set(_metering.get() | {address})
    token, opened, failure = _open_on_workers(client, settings)
    separately, twice = ExitStack(), None
    try:
        try:
            separately.enter_context(meter_separately(_local_pids(opened)))
        except (psutil.Error, OSError) as exc:
            twice = f"the workers could not be left out of the step's own share, which then counts them too: {exc!r}"
        yield meter
    finally:
        closed = _close_on_workers(client, token, opened)
        separately.close()
        with suppress(ValueError):  # exited in another context than entered
            _metering.reset(scope)
        energy = _cluster_energy(opened, closed, failure)
        meter.energy = replace(energy, failure=twice) if twice else energy
        charge_elsewhere(meter.energy.total(), meter.energy.where())


@dataclass(frozen=True)
class _Opened:
    """What a worker says when its block opens, and the blocks of other clients it holds open."""

    host: str
    pid: int
    create_time: float
    others: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class _Closed:
    host: str
    pid: int
    report: EnergyReport | None


def _open_on_workers(
    client: Client, settings: EnergySettings, retry: bool = True
) -> tuple[str, dict[str, Any], str | None]:
    """The blocks' token and each worker's ``_Opened`` (or the exception it raised); a failure of the whole call is
    returned, not raised. When blocks of ended clients were found open, they are closed and ours opened anew (once),
    so that ours never shared a worker with them."""
    token = uuid.uuid4().hex
    try:
        opened: dict[str, Any] = client.run(_open_on_worker, token, str(client.id), settings, on_error="return")
        others = {other for result in opened.values() if isinstance(result, _Opened) for other in result.others}
        if others and _discard_stale(client, others) and retry:
            client.run(_discard_on_worker, [token], on_error="ignore")
            return _open_on_workers(client, settings, retry=False)
    except Exception as exc:  # the scheduler may be gone in any way; the step's work goes on, unmeasured
        logger.warning("Could not open the energy metering of the Dask workers: %r", exc)
        return token, {}, f"the Dask workers' metering could not be opened: {exc!r}"
    return token, opened, None


def _discard_stale(client: Client, others: set[tuple[str, str]]) -> bool:
    """Close the blocks of clients no longer connected (a step killed while metering): left open, they would take
    an equal share of every later step's usage. Only blocks seen open before the scheduler listed its clients, so a
    client that connected since is not mistaken for an ended one. True if any was closed."""
    try:
        on_scheduler: Callable[..., Any] = client.run_on_scheduler  # not annotated in distributed
        live = set(on_scheduler(_live_clients))
        stale = [token for token, client_id in others if client_id not in live]
        if stale:
            client.run(_discard_on_worker, stale, on_error="ignore")
        return bool(stale)
    except Exception as exc:  # leaving them open only splits the workers' usage with them
        logger.warning("Could not close the metering left open on the Dask workers by ended clients: %r", exc)
        return False


def _close_on_workers(client: Client, token: str, opened: Mapping[str, Any]) -> dict[str, Any]:
    """Each worker's ``_Closed`` or the exception it raised; a failure of the whole call stands for every worker's."""
    try:
        closed: dict[str, Any] = client.run(_close_on_worker, token, on_error="return")
    except Exception as exc:  # as for opening: reported per worker, never raised into the step
        logger.warning("Could not close the energy metering of the Dask workers: %r", exc)
        return dict.fromkeys(opened, exc)
    return closed


def _local_pids(opened: Mapping[str, Any]) -> set[int]:
    """The worker processes running on this machine and their parents (a nanny process), if they are processes of
    ours: ``meter_separately`` keeps only our descendants. The start time tells a pid of ours from another host's."""
    here, pids = socket.gethostname(), set()
    for worker in opened.values():
        if not isinstance(worker, _Opened) or worker.host != here:
            continue
        try:
            process = psutil.Process(worker.pid)
            if process.create_time() == worker.create_time:
                pids |= {worker.pid, process.ppid()}
        except psutil.Error:
            continue
    return pids - {os.getpid()}


def _cluster_energy(opened: Mapping[str, Any], closed: Mapping[str, Any], open_failure: str | None) -> ClusterEnergy:
    """A part per worker seen opening or closing; ``open_failure`` (no worker opened) is each one's reason."""
    workers = []
    for address in sorted({*opened, *closed}):
        start, end = opened.get(address), closed.get(address)
        known = end if isinstance(end, _Closed) else start if isinstance(start, _Opened) else None
        host = known.host if known else get_address_host(address)
        report = end.report if isinstance(end, _Closed) and isinstance(start, _Opened) else None
        if report is None:
            report = _unmeasured(open_failure or _why_unmeasured(start, end))
        workers.append(WorkerEnergy(address, host, known.pid if known else None, report))
    return ClusterEnergy(tuple(workers), None if workers else open_failure)


def _why_unmeasured(start: Any, end: Any) -> str:
    if isinstance(start, BaseException):
        return f"its metering could not be opened: {start!r}"
    if start is None:
        return "it joined the cluster after the step started metering: its share of the step's work is unknown"
    if end is None:
        return "it left the cluster before the step's metering ended: its share of the step's work is unknown"
    if isinstance(end, BaseException):
        return f"its metering could not be closed: {end!r}"
    return "its meter was gone at the end (the worker process restarted): its share of the step's work is unknown"


def _unmeasured(reason: str, duration: float = 0.0) -> EnergyReport:
    status = EnergyStatus.UNMEASURED
    return EnergyReport(status=status, duration_s=duration, method=status.value, unmeasured_reason=reason)


# The worker side: run in each worker process by ``client.run``, on its event loop.

#: Blocks open in this worker process, by token: (the client that opened it, the block).
_OPEN: dict[str, tuple[str, OpenBlock]] = {}
_OPEN_LOCK = threading.Lock()
#: A key of its own per block, so that blocks of two steps open at once on one worker share it (``ProcessMeter.open``).
_SHARE_KEYS = count(1)


def _open_on_worker(token: str, client_id: str, settings: EnergySettings) -> _Opened:
    block = open_block(settings, share_key=-next(_SHARE_KEYS))
    with _OPEN_LOCK:
        others = tuple((other, owner) for other, (owner, _) in _OPEN.items())
        _OPEN[token] = (client_id, block)
    process = psutil.Process()
    return _Opened(socket.gethostname(), process.pid, process.create_time(), others)


def _close_on_worker(token: str) -> _Closed:
    with _OPEN_LOCK:
        entry = _OPEN.pop(token, None)
    return _Closed(socket.gethostname(), os.getpid(), None if entry is None else close_block(entry[1]))


def _discard_on_worker(tokens: list[str]) -> None:
    for token in tokens:
        with _OPEN_LOCK:
            entry = _OPEN.pop(token, None)
        if entry is not None:
            close_block(entry[1])
            logger.info("Closed the energy metering block %s of the ended Dask client %s.", token, entry[0])


def _live_clients(dask_scheduler: Any) -> list[str]:
    return [str(client_id) for client_id in dask_scheduler.clients]
