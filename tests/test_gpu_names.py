"""Providers spell GPUs a hundred ways; the catalog groups them under one canonical name."""

from __future__ import annotations

import csv

import pytest

from providers.gpu_names import FAMILIES, UnknownGpu, canonical_gpu
from providers.snapshot import SNAPSHOT_PATH


@pytest.mark.parametrize(
    ("raw", "memory", "expected"),
    [
        ("A100_80G_SXM4", 80.0, "A100 80GB"),
        ("A100-80GB", None, "A100 80GB"),
        ("A100-80G-PCIe-NVLink", 80.0, "A100 80GB"),
        ("A100", 40.0, "A100 40GB"),
        ("H100-SXM", 80.0, "H100 80GB"),
        ("H100", 79.6, "H100 80GB"),
        ("H100", 93.6, "H100 94GB"),
        ("H200", 140.4, "H200 141GB"),
        ("A10G", 22.4, "A10G 24GB"),
        ("RTXA6000", 47.2, "RTX A6000 48GB"),
        ("A6000", 48.0, "RTX A6000 48GB"),
        ("RTX-6000-Ada", 48.0, "RTX 6000 Ada 48GB"),
        ("RTX6000", 24.0, "RTX 6000 24GB"),
        ("RTXPRO6000WS", 95.6, "RTX PRO 6000 96GB"),
        ("RTX PRO 6000 96GB", None, "RTX PRO 6000 96GB"),
        ("RTX5090_PCIE_BAREMETAL", 32.0, "RTX 5090 32GB"),
        ("V100-32GB", None, "V100 32GB"),
        ("B300", 269.0, "B300 288GB"),
        ("Radeon Pro V520", 8.0, "Radeon Pro V520 8GB"),
        # Spellings of the provider APIs (providers/adapters/).
        ("NVIDIA-H100-80GB-HBM3", 79.6, "H100 80GB"),
        ("Tesla V100", 16.0, "V100 16GB"),
        ("H100 NVL", 94.0, "H100 94GB"),
        ("V100 SXM2 16GB", None, "V100 16GB"),
        ("RTX 6000Ada", 47.99, "RTX 6000 Ada 48GB"),
        ("RTX 4000 Ada", 20.0, "RTX 4000 Ada 20GB"),
        ("MI300X", 192.0, "MI300X 192GB"),
        ("NVIDIA-GeForce-RTX-4090", 23.99, "RTX 4090 24GB"),
    ],
)
def test_it_names_a_card_by_family_and_marketed_memory(raw: str, memory: float | None, expected: str) -> None:
    assert canonical_gpu(raw, memory)[0] == expected


def test_it_keeps_a_reported_size_that_no_marketed_size_explains() -> None:
    assert canonical_gpu("RTX4090", 48.0) == ("RTX 4090 48GB", 48)


def test_it_refuses_an_unknown_card() -> None:
    with pytest.raises(UnknownGpu, match="unknown GPU name 'Voodoo 5'"):
        canonical_gpu("Voodoo 5", 0.064)


def test_every_snapshot_row_has_a_known_family() -> None:
    with SNAPSHOT_PATH.open() as handle:
        names = {canonical_gpu(row["gpu_type"], float(row["gpu_memory_gb"]) if row["gpu_memory_gb"] else None)[0] for row in csv.DictReader(handle)}
    families = {name.rsplit(" ", 1)[0] for name in names}
    assert families <= set(FAMILIES)
    assert len(names) >= 40  # distinct cards, not collapsed into a handful
