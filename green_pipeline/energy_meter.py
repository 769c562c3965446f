"""CPU seconds and resident memory of this process, charged to the measured blocks open while they were spent.

One meter per process reads psutil when a block opens or closes, and once a second while any block is open (for
the memory integral). CPU time is a cumulative counter, so a block gets exactly what the process (its threads and
its child processes) spent between its start and its end, whatever else runs on the machine. Blocks open at once
on different threads of one process (a Dask worker with several threads) share each interval equally; nested
blocks on one thread each get all of it, since the inner one is part of the outer one.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field

import psutil

SAMPLE_INTERVAL_S = 1.0
_GB = float(2**30)


@dataclass
class Usage:
    """What one block used; ``error`` says why the figures are incomplete when the last reading failed."""

    thread: int = field(default_factory=threading.get_ident)
    cpu_s: float = 0.0
    gb_s: float = 0.0
    peers: int = 1
    error: str | None = None


class ProcessMeter:
    """Integrates this process's CPU time and resident memory over the blocks that are open."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._lock = threading.Condition()
        self._open: list[Usage] = []
        self._last = self._read()
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

    def _advance(self) -> None:
        """Charge the interval since the last reading to the open blocks, an equal share per thread."""
        reading = self._read()
        (then, cpu_then, gb_then), (now, cpu_now, gb_now) = self._last, reading
        self._last = reading
        threads = {usage.thread for usage in self._open}
        if not threads:
            return
        # A child that ended but is not yet reaped drops out of the sum for a moment: never charge a negative.
        cpu_share = max(cpu_now - cpu_then, 0.0) / len(threads)
        gb_s_share = (gb_then + gb_now) / 2 * (now - then) / len(threads)
        for usage in self._open:
            usage.cpu_s += cpu_share
            usage.gb_s += gb_s_share
            usage.peers = max(usage.peers, len(threads))

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
        return process.children(recursive=True)
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
    """This process's meter, created on first use."""
    global _meter
    with _meter_lock:
        if _meter is None:
            _meter = ProcessMeter()
        return _meter


def _forget_meter_in_child() -> None:
    """A forked child has its own CPU time and none of the parent's threads: it starts a meter of its own."""
    global _meter, _meter_lock
    _meter, _meter_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_meter_in_child)
