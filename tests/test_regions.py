"""Region and instance names as people read them, whatever style the provider uses."""

from __future__ import annotations

import pytest

from providers.regions import NOT_STATED, instance_label, region_label


@pytest.mark.parametrize(
    ("raw", "label"),
    [
        ("us-east-1", "US East 1"),
        ("eastus2", "US East 2"),
        ("europe-west4", "Europe West 4"),
        ("us-central2-b", "US Central 2 (zone b)"),
        ("CA-MTL-1", "Montreal 1, Canada"),
        ("US-TX-3", "Texas 3, US"),
        ("EU-CZ-1", "Czechia 1"),
        ("fr-par-2", "Paris 2, France"),
        ("newyork-usa-1", "New York 1, US"),
        ("Montana, US, NA", "Montana, US"),
        ("Ontario, CA, NA", "Ontario, Canada"),
        ("France, FR, EU", "France"),
        (", CN, AS", "China"),
        ("FRA2", "Frankfurt 2"),
        ("FIN-01", "Finland 1"),
        ("East Coast (NY2)", "East Coast (NY2)"),
    ],
)
def test_each_provider_style_reads_the_same_way(raw: str, label: str) -> None:
    assert region_label(raw) == label


@pytest.mark.parametrize("raw", ["", "default", "any region", "a3111bd4-550a-47d0-838a-0a52bff2ae3f"])
def test_a_missing_or_meaningless_region_says_it_is_not_stated(raw: str) -> None:
    assert region_label(raw) == NOT_STATED


def test_a_providers_own_instance_name_is_kept_and_marketplace_ids_are_hidden() -> None:
    assert instance_label("g5.2xlarge") == "g5.2xlarge"
    assert instance_label("gpu_8x_h100_sxm5") == "gpu_8x_h100_sxm5"
    assert instance_label("H100x8_NVLINK_668d6762247d03149a4c9474_montreal-canada-2") == ""
    assert instance_label("hyperstack__8xA100_80GB__252__1920__NVLINK") == ""
    assert instance_label("8x112v952g_NVIDIA_GeForce_RTX_5090_32G_SECURE") == ""
