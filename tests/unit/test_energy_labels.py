"""What energy figures say about themselves: status, totals that never understate, readable units, and the grid
intensity used when no country is set."""

from __future__ import annotations

import subprocess
import sys

import pytest
from codecarbon.input import DataSource

from green_pipeline.energy.measurement import EnergyReport, EnergySettings, EnergyStatus, complete_sum
from green_pipeline.errors import InvalidConfigError
from green_pipeline.orchestration.resources import EnergyResource


def test_estimated_figures_count_and_only_unmeasured_ones_do_not() -> None:
    assert EnergyStatus.MEASURED.has_figures and EnergyStatus.ESTIMATED.has_figures
    assert not EnergyStatus.UNMEASURED.has_figures
    assert EnergyStatus.of_total(["measured", "measured"]) == EnergyStatus.MEASURED
    assert EnergyStatus.of_total(["measured", "estimated"]) == EnergyStatus.ESTIMATED
    assert EnergyStatus.of_total(["estimated", "unmeasured"]) == EnergyStatus.UNMEASURED
    assert EnergyStatus.of_total([]) == EnergyStatus.UNMEASURED


def test_a_total_is_none_rather_than_a_part_of_the_sum() -> None:
    assert complete_sum([0.001, 0.002]) == pytest.approx(0.003)
    assert complete_sum([0.001, None]) is None
    assert complete_sum([]) is None


def test_metadata_carries_a_readable_figure_next_to_the_exact_one() -> None:
    report = EnergyReport(
        status=EnergyStatus.ESTIMATED, duration_s=0.4, method="estimated: ...", energy_kwh=5.951735544929733e-7
    )

    metadata = report.as_metadata()

    assert metadata["energy_kwh"] == 5.951735544929733e-7  # exact, for the ledger and budgets
    assert metadata["energy_mwh"] == 0.595  # three significant digits, for people and the UI's plots
    assert metadata["energy_status"] == "estimated"


def test_with_no_country_the_world_average_is_used_said_and_warned_once() -> None:
    probe = (
        "import logging\n"
        "logging.basicConfig(format='%(name)s %(levelname)s %(message)s')\n"
        "from green_pipeline.energy.measurement import EnergySettings, measure_energy\n"
        "for _ in range(3):\n"
        "    with measure_energy(EnergySettings()) as m: pass\n"
        "print(m.report.carbon_intensity_g_per_kwh)\n"
        "print(m.report.method)\n"
        "print(sorted(m.report.as_metadata()))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    intensity, method, keys = done.stdout.splitlines()

    assert float(intensity) == pytest.approx(DataSource().get_carbon_intensity_per_source_data()["world_average"])
    assert "carbon: codecarbon's world average (energy.country_iso_code is not set)" in method
    assert "country_iso_code" not in keys
    logged = [line for line in done.stderr.splitlines() if line.startswith("green_pipeline")]
    assert logged == [
        "green_pipeline.energy.measurement WARNING energy.country_iso_code is not set: CO2 figures use codecarbon's "
        "world average grid intensity. Set it (ISO 3166 alpha-3, e.g. FRA, USA) to where this machine runs."
    ]


def test_the_energy_resource_sets_no_country_unless_told() -> None:
    assert EnergyResource().to_settings().country_iso_code is None
    assert EnergyResource(country_iso_code="fra").to_settings().country_iso_code == "FRA"


def test_a_region_without_a_country_is_refused_by_name() -> None:
    with pytest.raises(InvalidConfigError, match=r"energy\.region is 'FR-IDF' but energy\.country_iso_code is not set"):
        EnergySettings(region="FR-IDF")
