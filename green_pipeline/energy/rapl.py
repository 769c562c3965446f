"""RAPL energy counters (Linux powercap) and the machine's busy CPU time: what a step's share of the CPU drew.

A package counter measures the whole CPU package, whatever runs on it. So each interval's package energy is split
by CPU time: a step is charged it x its process's CPU seconds / the machine's busy CPU seconds in the same interval
(``/proc/stat``, all CPUs, idle and iowait left out). Steps running at once then split what the package drew while
they ran, and the idle draw is charged to none of them. A DRAM domain (Intel servers; AMD has none) is split the
same way and only where it exists. A counter wraps to zero past ``max_energy_range_uj``; the meter reads it at least
once a second, far more often than it can wrap. ``intel-rapl-mmio`` zones repeat the package counter, and ``psys``,
``core`` and ``uncore`` overlap it: none of them is read.

``POWERCAP_ROOT`` and ``PROC_STAT`` are read when a process's meter starts: point them elsewhere to test.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

POWERCAP_ROOT = Path("/sys/class/powercap")
PROC_STAT = Path("/proc/stat")
#: Zones such as intel-rapl:0 or intel-rapl:0:2; not intel-rapl-mmio:0, a second view of the same package.
_ZONE = re.compile(r"[a-z]+-rapl(:\d+)+")
#: /proc/stat's cpu line: user nice system idle iowait irq softirq steal (guest time is already in user).
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)


@dataclass(frozen=True)
class Domain:
    """One counter: a package (``package-N``) or the memory attached to one (``dram``)."""

    name: str
    counter: Path
    range_uj: int

    @property
    def is_dram(self) -> bool:
        return self.name == "dram"


@dataclass(frozen=True)
class Reading:
    """The machine's busy CPU seconds and each domain's counter, in the order of ``Rapl.domains``."""

    busy_s: float
    energy_uj: tuple[int, ...]


@dataclass(frozen=True)
class Interval:
    """What the machine did between two readings."""

    busy_s: float
    package_j: float
    dram_j: float


class Rapl:
    """Reads the package and DRAM counters and the machine's CPU time; raises ``OSError`` or ``ValueError``."""

    def __init__(self, domains: Sequence[Domain], proc_stat: Path) -> None:
        self.domains = tuple(domains)
        self.proc_stat = proc_stat
        self._tick_s = 1.0 / os.sysconf("SC_CLK_TCK")

    @property
    def has_dram(self) -> bool:
        return any(domain.is_dram for domain in self.domains)

    def read(self) -> Reading:
        with self.proc_stat.open(encoding="ascii") as stat:
            fields = stat.readline().split()
        if not fields or fields[0] != "cpu":
            raise ValueError(f"{self.proc_stat}: the first line is not the machine's cpu line")
        busy = sum(int(fields[1 + index]) for index in _BUSY_FIELDS) * self._tick_s
        return Reading(busy, tuple(int(domain.counter.read_text(encoding="ascii")) for domain in self.domains))

    def between(self, start: Reading, end: Reading) -> Interval:
        """Energy per kind of domain between two readings; a counter lower at the end has wrapped once."""
        package_j = dram_j = 0.0
        for domain, before, after in zip(self.domains, start.energy_uj, end.energy_uj, strict=True):
            joules = (after - before if after >= before else after + domain.range_uj - before) / 1e6
            if domain.is_dram:
                dram_j += joules
            else:
                package_j += joules
        return Interval(max(end.busy_s - start.busy_s, 0.0), package_j, dram_j)

    def describe(self) -> str:
        names = ", ".join(domain.name for domain in self.domains)
        return f"RAPL counters ({names}) read from {self.domains[0].counter.parent.parent}"


def share(process_cpu_s: float, busy_s: float) -> float:
    """The step's part of what the CPUs did; at most all of it, as the two clocks are read a moment apart."""
    if busy_s <= 0:
        return 1.0 if process_cpu_s > 0 else 0.0
    return min(process_cpu_s / busy_s, 1.0)


def discover(root: Path | None = None, proc_stat: Path | None = None) -> tuple[Rapl | None, str]:
    """The machine's readable package (and DRAM) counters, or None and why they cannot be used."""
    root, proc_stat = root or POWERCAP_ROOT, proc_stat or PROC_STAT
    try:
        zones = sorted(path for path in root.iterdir() if _ZONE.fullmatch(path.name))
    except OSError as exc:
        return None, f"no RAPL counters ({root}: {exc.strerror or type(exc).__name__})"
    try:
        domains = [_domain(zone) for zone in zones]
        chosen = [domain for domain in domains if domain is not None]
        if not any(not domain.is_dram for domain in chosen):
            return None, f"no RAPL package counter under {root}"
        rapl = Rapl(chosen, proc_stat)
        rapl.read()
    except (OSError, ValueError) as exc:
        return None, f"RAPL counters present but unreadable ({type(exc).__name__}: {exc})"
    return rapl, ""


def _domain(zone: Path) -> Domain | None:
    name = (zone / "name").read_text(encoding="ascii").strip()
    if not (name.startswith("package") or name == "dram"):
        return None
    return Domain(name, zone / "energy_uj", int((zone / "max_energy_range_uj").read_text(encoding="ascii")))
