"""CPU seconds and resident memory of this process, charged to the metered blocks open while they were spent.

One meter per process reads psutil when a block opens or closes, and once a second while any block is open (for
the memory integral). CPU time is a cumulative counter, so a block gets exactly what the process (its threads and
its child processes) spent between its start and its end, whatever else runs on the machine. Blocks open at once
on different threads of one process (a Dask worker with several threads) share each interval equally; nested
blocks on one thread each get all of it, since the inner one is part of the outer one.

Where the machine's RAPL counters are readable (``green_pipeline.energy.rapl``), each reading also takes them and the
machine's busy CPU time, and each interval charges a block its CPU share of the package (and DRAM) energy. Reading
once a second keeps a counter from wrapping more than once between two readings.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field

import psutil

from green_pipeline.energy.rapl import Rapl, Reading, discover, share

SAMPLE_INTERVAL_S = 1.0
_GB = float(2**30)


@dataclass
class Usage:
    """What one block used; ``error`` says why the figures are incomplete when the last reading failed.

    ``package_j`` and ``dram_j`` are its share of the RAPL counters, valid only while ``rapl_error`` is None and
    the meter has counters.
    """

    thread: int = field(default_factory=threading.get_ident)
    cpu_s: float = 0.0
    gb_s: float = 0.0
    peers: int = 1
    error: str | None = None
    package_j: float = 0.0
    dram_j: float = 0.0
    rapl_error: str | None = None


class ProcessMeter:
    """Integrates this process's CPU time and resident memory (and RAPL shares) over the blocks that are open."""

    def __init__(self, rapl: Rapl | None = None, rapl_absent: str = "no RAPL counters") -> None:
        self.rapl = rapl
        #: Why ``rapl`` is None, for the energy method.
        self.rapl_absent = rapl_absent
        self._process = psutil.Process()
        self._lock = threading.Condition()
        self._open: list[Usage] = []
        self._last = self._read()
        self._last_machine, _ = self._read_machine()
        self._sampler: threading.Thread | None = None

    def open(self) -> Usage:
        """Start charging a new block; raises ``psutil.Error`` or ``OSError`` when the process cannot be read."""
        with self._lock:
            self._advance()
            usage = Usage()
            self._open.append(usage)
            self._ensure_sampler()
            self._lock.notify()
        return usage

    def close(self, usage: Usage) -> Usage:
        """Stop charging ``usage``; never raises, a failed last reading is reported in ``usage.error``."""
        with self._lock:
            try:
                self._advance()
            except (psutil.Error, OSError) as exc:
                usage.error = f"psutil could not read this process at the end: {type(exc).__name__}: {exc}"
            finally:
                self._open.remove(usage)
        return usage

    def _read(self) -> tuple[float, float, float]:
        """Wall clock, CPU seconds and resident GB of this process and its live and finished child processes."""
        now = time.perf_counter()
        times = self._process.cpu_times()
        cpu = times.user + times.system + times.children_user + times.children_system
        rss = self._process.memory_info().rss
        for child in _descendants(self._process):
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):  # ended or foreign meanwhile
                child_times = child.cpu_times()
                cpu += child_times.user + child_times.system + child_times.children_user + child_times.children_system
                rss += child.memory_info().rss
        return now, cpu, rss / _GB

    def _read_machine(self) -> tuple[Reading | None, str | None]:
        """The RAPL counters and busy CPU time, or None and why not (then this interval cannot be split)."""
        if self.rapl is None:
            return None, None
        try:
            return self.rapl.read(), None
        except (OSError, ValueError) as exc:
            return None, f"a RAPL counter could not be read: {type(exc).__name__}: {exc}"

    def _advance(self) -> None:
        """Charge the interval since the last reading to the open blocks, an equal share per thread."""
        reading = self._read()
        machine, machine_error = self._read_machine()
        (then, cpu_then, gb_then), (now, cpu_now, gb_now) = self._last, reading
        machine_then, self._last, self._last_machine = self._last_machine, reading, machine
        threads = {usage.thread for usage in self._open}
        if not threads:
            return
        # A child that ended but is not yet reaped drops out of the sum for a moment: never charge a negative.
        cpu_share = max(cpu_now - cpu_then, 0.0) / len(threads)
        gb_s_share = (gb_then + gb_now) / 2 * (now - then) / len(threads)
        interval = rapl_error = None
        if self.rapl is not None and machine_then is not None and machine is not None:
            interval = self.rapl.between(machine_then, machine)
        elif self.rapl is not None:
            rapl_error = machine_error or "a RAPL counter could not be read at the previous reading"
        for usage in self._open:
            usage.cpu_s += cpu_share
            usage.gb_s += gb_s_share
            usage.peers = max(usage.peers, len(threads))
            usage.rapl_error = usage.rapl_error or rapl_error
            if interval is not None:
                fraction = share(cpu_share, interval.busy_s)
                usage.package_j += interval.package_j * fraction
                usage.dram_j += interval.dram_j * fraction

    def _ensure_sampler(self) -> None:
        if self._sampler is None or not self._sampler.is_alive():
            self._sampler = threading.Thread(target=self._sample, name="green-pipeline-energy", daemon=True)
            self._sampler.start()

    def _sample(self) -> None:
        """Sleeps while no block is open; otherwise reads once a second (a missed reading only coarsens the RAM)."""
        with self._lock:
            while True:
                self._lock.wait_for(lambda: self._open)
                self._lock.wait(SAMPLE_INTERVAL_S)
                if self._open:
                    with contextlib.suppress(psutil.Error, OSError):
                        self._advance()


def _descendants(process: psutil.Process) -> list[psutil.Process]:
    """Live child processes, recursively. Linux lists each thread's children in /proc (microseconds); psutil's
    ``children()`` reads every process on the machine (milliseconds per call with a few hundred processes)."""
    if not _PROC_CHILDREN:
        children: list[psutil.Process] = process.children(recursive=True)
        return children
    found, pending = [], [process.pid]
    while pending:
        pid = pending.pop()
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a thread or process ended meanwhile
            for tid in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                    with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as listing:
                        children = [int(child) for child in listing.read().split()]
                    pending += children
                    found += children
    processes = []
    for pid in found:
        with contextlib.suppress(psutil.NoSuchProcess):
            processes.append(psutil.Process(pid))
    return processes


_PROC_CHILDREN = os.path.exists(f"/proc/self/task/{threading.get_native_id()}/children")
_meter: ProcessMeter | None = None
_meter_lock = threading.Lock()


def process_meter() -> ProcessMeter:
    """This process's meter, created on first use with the machine's readable RAPL counters, if any."""
    global _meter
    with _meter_lock:
        if _meter is None:
            _meter = ProcessMeter(*discover())
        return _meter


def process_pids() -> set[int]:
    """This process and its live child processes: what a device's process list must hold to be ours alone."""
    process = psutil.Process()
    return {process.pid, *(child.pid for child in _descendants(process))}


def _forget_meter_in_child() -> None:
    """A forked child has its own CPU time and none of the parent's threads: it starts a meter of its own."""
    global _meter, _meter_lock
    _meter, _meter_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_meter_in_child)
