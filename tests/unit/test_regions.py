"""The region advisor ranks regions by codecarbon's intensities and scales measured energy by them."""

import csv
import json
from importlib.resources import files

import pytest

from green_pipeline.carbon.regions import PROVIDERS, advice_table, cloud_regions, measured_energy_kwh, region_advice
from green_pipeline.errors import InvalidConfigError

LBS_PER_MWH_TO_G_PER_KWH = 453.59237 / 1000


def _codecarbon_data(path: str) -> str:
    return files("codecarbon").joinpath("data", *path.split("/")).read_text(encoding="utf-8-sig")


def test_gcp_regions_are_codecarbons_impact_figures_cleanest_first() -> None:
    impact = {
        r["region"]: float(r["impact"]) for r in csv.DictReader(_codecarbon_data("cloud/impact.csv").splitlines())
    }
    ranked = cloud_regions("gcp")
    assert {r.region: r.g_co2_per_kwh for r in ranked} == impact
    assert [r.g_co2_per_kwh for r in ranked] == sorted(impact.values())


def test_aws_and_azure_regions_use_codecarbons_grid_data_for_their_location() -> None:
    egrid = json.loads(_codecarbon_data("private_infra/2023/usa_emissions.json"))
    mix = json.loads(_codecarbon_data("private_infra/global_energy_mix.json"))
    aws = {r.region: r for r in cloud_regions("aws")}
    assert aws["us-east-1"].g_co2_per_kwh == pytest.approx(egrid["virginia"]["emissions"] * LBS_PER_MWH_TO_G_PER_KWH)
    assert "eGRID 2023 (virginia)" in aws["us-east-1"].source
    azure = {r.region: r for r in cloud_regions("azure")}
    assert azure["francecentral"].g_co2_per_kwh == pytest.approx(mix["FRA"]["carbon_intensity"])
    everywhere = cloud_regions()
    assert {r.provider for r in everywhere} == set(PROVIDERS)
    assert [r.g_co2_per_kwh for r in everywhere] == sorted(r.g_co2_per_kwh for r in everywhere)


def test_advice_scales_the_measured_energy_and_says_unmeasured_without_it() -> None:
    advice = region_advice(0.002, "azure", top=3)
    regions = cloud_regions("azure")[:3]
    assert [(a.rank, a.region) for a in advice] == [(i + 1, r.region) for i, r in enumerate(regions)]
    assert [a.emissions_kg_co2eq for a in advice] == pytest.approx([0.002 * r.g_co2_per_kwh / 1000 for r in regions])
    unmeasured = region_advice(measured_energy_kwh([None, None]), "gcp", top=2)
    assert [a.emissions_kg_co2eq for a in unmeasured] == [None, None]
    assert advice_table(unmeasured).count("| unmeasured |") == 2
    assert measured_energy_kwh([0.001, None, 0.002]) == pytest.approx(0.003)


def test_unknown_provider_and_bad_top_are_refused_by_name() -> None:
    with pytest.raises(InvalidConfigError, match="unknown cloud provider 'ibm'"):
        cloud_regions("ibm")
    with pytest.raises(InvalidConfigError, match="--top must be at least 1"):
        region_advice(1.0, None, top=0)
