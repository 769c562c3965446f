"""Processes metered on their own (a local Dask cluster's workers, while a step meters them) are left out of this
process's meter: while left out, when counted again, and when they end and are reaped into this process's counters.

Apart from test_cluster_energy.py on purpose: a live local cluster's processes would add their own CPU time here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from green_pipeline.energy.measurement import JOULES_PER_KWH, EnergySettings, measure_energy
from green_pipeline.energy.meter import meter_separately
from green_pipeline.energy.power_model import power_model

SETTINGS = EnergySettings(country_iso_code="FRA")
#: CPU seconds the child process spends; this process's own share must stay far below it.
BUSY_CPU_S = 0.6
DEADLINE_S = 30
#: psutil reads CPU time in clock ticks (10 ms); a figure may miss one at each end.
TICK_S = 0.02


def cpu_seconds(energy_kwh: float | None) -> float:
    """CPU seconds behind an estimated CPU figure (this machine has no RAPL counters: test_energy.py)."""
    assert energy_kwh is not None
    return energy_kwh * JOULES_PER_KWH / power_model("FRA", None, None).cpu_w_per_thread


BUSY_CHILD = (
    "import hashlib, sys, time\n"
    "for line in sys.stdin:\n"
    "    digest, started = b'', time.process_time()\n"
    f"    while time.process_time() - started < {BUSY_CPU_S}:\n"
    "        digest = hashlib.sha256(digest).digest()\n"
    "    print('done', flush=True)\n"
)


@pytest.fixture
def busy_child() -> Iterator[subprocess.Popen[str]]:
    """A child process that spends ``BUSY_CPU_S`` of CPU for each line it is given and says so; it ends when its
    stdin closes."""
    child = subprocess.Popen(
        [sys.executable, "-c", BUSY_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    yield child
    for stream in (child.stdin, child.stdout):
        if stream is not None:
            stream.close()
    child.wait(timeout=DEADLINE_S)


def _work(child: subprocess.Popen[str]) -> None:
    """Lets the child work once, and waits until it is done."""
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.stdout.readline() == "done\n"


def test_a_process_metered_separately_is_left_out_then_counted_again_without_a_jump(
    busy_child: subprocess.Popen[str],
) -> None:
    with measure_energy(SETTINGS) as step:
        with meter_separately([busy_child.pid, os.getpid(), 1]) as separate:
            assert separate == {busy_child.pid}  # only a descendant of ours can be left out
            _work(busy_child)
        # Counted again from here, with the block still open: its work from now on, not what it spent before.
        _work(busy_child)
    assert step.local is not None
    assert BUSY_CPU_S - TICK_S <= cpu_seconds(step.local.cpu_energy_kwh) < BUSY_CPU_S * 1.5


def test_a_process_metered_separately_that_ends_is_not_charged_when_reaped(
    busy_child: subprocess.Popen[str],
) -> None:
    with measure_energy(SETTINGS) as step, meter_separately([busy_child.pid]):
        _work(busy_child)
        assert busy_child.stdin is not None
        busy_child.stdin.close()
        # Reaped: all its CPU time joins this process's finished-children counters at once, most of it spent since
        # the meter's last reading.
        busy_child.wait(timeout=DEADLINE_S)
    assert step.local is not None and cpu_seconds(step.local.cpu_energy_kwh) < BUSY_CPU_S / 2


def test_without_leaving_it_out_a_process_of_ours_is_charged(busy_child: subprocess.Popen[str]) -> None:
    """The reference for the two tests above: the same work, counted as this process's own."""
    with measure_energy(SETTINGS) as step:
        _work(busy_child)
    assert step.local is not None and cpu_seconds(step.local.cpu_energy_kwh) >= BUSY_CPU_S - TICK_S
