"""CPU seconds and resident memory of this process, charged to the metered blocks open while they were spent.

One meter per process reads psutil when a block opens or closes, and once a second while any block is open (for
the memory integral). CPU time is a cumulative counter, so a block gets exactly what the process (its threads and
its child processes) spent between its start and its end, whatever else runs on the machine. Blocks open at once
on different threads of one process (a Dask worker with several threads) share each interval equally; nested
blocks on one thread each get all of it, since the inner one is part of the outer one.

Where the machine's RAPL counters are readable (``green_pipeline.energy.rapl``), each reading also takes them and the
machine's busy CPU time, and each interval charges a block its CPU share of the package (and DRAM) energy. Reading
once a second keeps a counter from wrapping more than once between two readings.

Processes metered on their own (the worker processes of a local Dask cluster while a step meters them:
``meter_separately``) are left out with their descendants, so their CPU time is never counted twice. The meter
reads just before and just after that set changes, so no block is charged the jump. A process left out that ends is
reaped into its parent's counters of finished children, all its CPU time at once: when that parent is this process
(a local cluster's workers), the counters' jump over that interval is taken back out (less what other children
that ended in it had spent by the last reading); when it is another process of ours, its CPU time at the last
reading is.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psutil

from green_pipeline.energy.rapl import Rapl, Reading, discover, share

SAMPLE_INTERVAL_S = 1.0
_GB = float(2**30)


@dataclass
class Usage:
    """What one block used; ``error`` says why the figures are incomplete when the last reading failed.

    ``package_j`` and ``dram_j`` are its share of the RAPL counters, valid only while ``rapl_error`` is None and
    the meter has counters. Blocks open at once share each interval equally per distinct ``thread``: the block's
    thread, or a key of its own for a block that meters on behalf of another process (``ProcessMeter.open``).
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
        self._separate = _Separated(self._process.pid)
        self._last = self._read()
        self._last_machine, _ = self._read_machine()
        self._sampler: threading.Thread | None = None

    def open(self, share_key: int | None = None) -> Usage:
        """Start charging a new block; raises ``psutil.Error`` or ``OSError`` when the process cannot be read.

        Blocks share by thread. A block opened on behalf of another process (a step metering a Dask worker, from
        the worker's event loop) passes a ``share_key`` of its own: blocks of two steps open at once on one worker
        then split it equally, as blocks on two threads do, rather than each getting all of it.
        """
        with self._lock:
            self._advance()
            usage = Usage() if share_key is None else Usage(thread=share_key)
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

    def separate(self, pids: Iterable[int]) -> frozenset[int]:
        """Leave these descendant processes, and theirs, out of this meter until ``rejoin``; returns those left out.

        A pid that is not a live descendant of this process (ours, a remote worker's) is not ours to leave out.
        Calls nest: a process is left out until each ``separate`` naming it has been rejoined.
        """
        with self._lock:
            ours = {child.pid: child for child in _tree(self._process)[0]}
            chosen = frozenset(pid for pid in pids if pid in ours)
            self._regroup(lambda: self._separate.add(chosen, ours))
        return chosen

    def rejoin(self, pids: Iterable[int]) -> None:
        """Count these processes here again (those ``separate`` returned), from now on."""
        with self._lock:
            self._regroup(lambda: self._separate.remove(pids))

    def _regroup(self, change: Callable[[], None]) -> None:
        """Charge the open blocks up to now, change the processes counted, then read anew: no block sees the jump."""
        try:
            self._advance()
        except (psutil.Error, OSError) as exc:
            self._fail_open(f"psutil could not read this process before the processes it counts changed: {exc!r}")
        change()
        try:
            self._last = self._read()
            self._last_machine, _ = self._read_machine()
        except (psutil.Error, OSError) as exc:
            self._fail_open(f"psutil could not read this process after the processes it counts changed: {exc!r}")

    def _fail_open(self, error: str) -> None:
        for usage in self._open:
            usage.error = usage.error or error

    def _read(self) -> tuple[float, float, float]:
        """Wall clock, CPU seconds and resident GB of this process and its live and finished child processes,
        less the separate processes. Read again when one of those ended during the reading, so that its reap is
        wholly before the reading or wholly after it."""
        gone: list[_Separate] = []
        for _ in range(3):
            present = self._separate.settle(gone)
            now, cpu, rss, children_s, direct = self._read_tree()
            if self._separate.settle(gone) == present:
                break
        self._separate.account(gone, now, children_s, direct)
        return now, cpu - self._separate.reaped_s, rss / _GB

    def _read_tree(self) -> tuple[float, float, float, float, dict[int, float]]:
        """The readings, and this process's finished-children CPU and its live children's CPU for ``_Separated``."""
        now = time.perf_counter()
        times = self._process.cpu_times()
        cpu, rss, direct = _cpu_s(times), self._process.memory_info().rss, {}
        descendants, children = _tree(self._process, skip=self._separate.processes.keys())
        for child in descendants:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):  # ended or foreign meanwhile
                child_s = _cpu_s(child.cpu_times())
                cpu += child_s
                rss += child.memory_info().rss
                if child.pid in children:
                    direct[child.pid] = child_s
        return now, cpu, rss, float(times.children_user + times.children_system), direct

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


@dataclass
class _Separate:
    """A process metered on its own, its parent (who reaps it), and its CPU time at the last reading."""

    process: psutil.Process
    parent: psutil.Process
    cpu_s: float
    holds: int = 1


class _Separated:
    """The processes metered on their own, and the CPU time of those that ended into counters this meter reads.

    A child that ends is reaped into its parent's finished-children counters. For a child of this process, the
    jump of this process's counters over the interval is its final CPU time, less what the other children that
    ended in it had spent by the last reading; the few milliseconds those spent since are taken out with it.
    """

    def __init__(self, own_pid: int) -> None:
        self.processes: dict[int, _Separate] = {}
        #: CPU seconds of separate processes that ended, reaped into the finished-children counters read here.
        self.reaped_s = 0.0
        self._own = own_pid
        self._last: tuple[float, float, dict[int, float]] = (time.perf_counter(), 0.0, {})

    def add(self, pids: Collection[int], ours: dict[int, psutil.Process]) -> None:
        for pid in pids:
            if pid in self.processes:
                self.processes[pid].holds += 1
                continue
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):  # ended meanwhile
                process = ours[pid]
                parent = psutil.Process(process.ppid())
                self.processes[pid] = _Separate(process, parent, _cpu_s(process.cpu_times()))

    def remove(self, pids: Iterable[int]) -> None:
        for pid in pids:
            separate = self.processes.get(pid)
            if separate is not None:
                separate.holds -= 1
                if not separate.holds:
                    del self.processes[pid]

    def settle(self, gone: list[_Separate]) -> frozenset[int]:
        """Note each one's CPU time, move those reaped to ``gone``; the pids still there (a zombie still is)."""
        for pid, separate in list(self.processes.items()):
            try:
                separate.cpu_s = _cpu_s(separate.process.cpu_times())
            except psutil.NoSuchProcess as exc:
                if not isinstance(exc, psutil.ZombieProcess):
                    gone.append(self.processes.pop(pid))
            except psutil.AccessDenied:
                continue
        return frozenset(self.processes)

    def account(self, gone: list[_Separate], now: float, children_s: float, direct: dict[int, float]) -> None:
        """Add the CPU time of the ``gone`` ones that reached counters read here, then keep this reading."""
        then, children_then, direct_then = self._last
        self._last = (now, children_s, direct)
        ours = [separate for separate in gone if separate.parent.pid == self._own]
        # Reaped by a live process of ours that is counted here: what it had spent by the last reading.
        self.reaped_s += sum(
            separate.cpu_s
            for separate in gone
            if separate.parent.pid not in (self._own, *self.processes) and separate.parent.is_running()
        )
        if ours:
            others = sum(cpu for pid, cpu in direct_then.items() if pid not in direct)
            last = sum(separate.cpu_s for separate in ours)
            most = last + (now - then) * (psutil.cpu_count() or 1) * len(ours)
            self.reaped_s += min(max(children_s - children_then - others, last), most)


def _cpu_s(times: Any) -> float:
    """CPU seconds of a process and of its finished children (what its parent's counters get when it is reaped)."""
    return float(times.user + times.system + times.children_user + times.children_system)


def _descendants(process: psutil.Process) -> list[psutil.Process]:
    """Live child processes, recursively."""
    return _tree(process)[0]


def _tree(process: psutil.Process, skip: Collection[int] = ()) -> tuple[list[psutil.Process], set[int]]:
    """Live child processes, recursively, but none in ``skip`` nor below one; and the pids of the direct children.
    Linux lists each thread's children in /proc (microseconds); psutil's ``children()`` reads every process on the
    machine (milliseconds per call with a few hundred processes)."""
    if not _PROC_CHILDREN:
        found = _skipping(process.children(), skip)
        return found, {child.pid for child in process.children() if child.pid not in skip}
    found_pids, pending, direct = [], [process.pid], set()
    while pending:
        pid = pending.pop()
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a thread or process ended meanwhile
            for tid in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                    with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as listing:
                        children = [int(child) for child in listing.read().split() if int(child) not in skip]
                    pending += children
                    found_pids += children
                    if pid == process.pid:
                        direct.update(children)
    processes = []
    for pid in found_pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            processes.append(psutil.Process(pid))
    return processes, direct


def _skipping(children: list[psutil.Process], skip: Collection[int]) -> list[psutil.Process]:
    found = []
    for child in children:
        if child.pid not in skip:
            found.append(child)
            with contextlib.suppress(psutil.NoSuchProcess):
                found += _skipping(child.children(), skip)
    return found


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


@contextlib.contextmanager
def meter_separately(pids: Iterable[int]) -> Iterator[frozenset[int]]:
    """Leave these descendant processes (and theirs) out of this process's meter inside the block, because they are
    metered on their own (a local Dask cluster's workers, by ``distributed.metering``); yields those left out."""
    meter = process_meter()
    separate = meter.separate(pids)
    try:
        yield separate
    finally:
        meter.rejoin(separate)


def process_pids() -> set[int]:
    """This process and its live child processes: what a device's process list must hold to be ours alone."""
    process = psutil.Process()
    return {process.pid, *(child.pid for child in _descendants(process))}


def _forget_meter_in_child() -> None:
    """A forked child has its own CPU time and none of the parent's threads: it starts a meter of its own."""
    global _meter, _meter_lock
    _meter, _meter_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_meter_in_child)
