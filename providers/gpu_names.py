"""Canonical GPU names: every provider spells the same card differently.

`canonical_gpu("A100_80G_SXM4", 80.0)` and `canonical_gpu("A100-80GB", None)` are both
"A100 80GB". The name is the family plus its marketed memory, chosen from the sizes the family is
sold in, nearest to what the provider reports (providers report GiB, or round differently).
"""

from __future__ import annotations

import re

# Family -> memory sizes (GB) it is sold in; the first is assumed when nothing says otherwise.
FAMILIES: dict[str, tuple[int, ...]] = {
    "B300": (288,),
    "B200": (180,),
    "GH200": (96,),
    "H200": (141,),
    "H100": (80, 94),
    "A100": (40, 80),
    "A800": (80,),
    "L40S": (48,),
    "L40": (48,),
    "L4": (24,),
    "A40": (48,),
    "A30": (24,),
    "A16": (16,),
    "A10": (24,),
    "A10G": (24,),
    "V100": (16, 32),
    "P100": (16,),
    "T4": (16,),
    "K80": (12,),
    "M60": (8,),
    "M4000": (8,),
    "P4000": (8,),
    "RTX PRO 6000": (96,),
    "MI300X": (192,),
    "RTX 6000 Ada": (48,),
    "RTX 4000 Ada": (20,),
    "RTX 5880 Ada": (48,),
    "RTX 6000": (24,),
    "RTX A6000": (48,),
    "RTX A5000": (24,),
    "RTX A4500": (20,),
    "RTX A4000": (16,),
    "RTX 5090": (32,),
    "RTX 5070": (12,),
    "RTX 4090": (24,),
    "RTX 4070": (12, 16),
    "RTX 4060": (8, 16),
    "RTX 3090": (24,),
    "RTX 3070": (8,),
    "RTX 3060": (12, 8),
    "Radeon MI25": (16,),
    "Radeon Pro V520": (8,),
}

# Words that name a form factor or interconnect, not a different card.
# Vendor and memory-technology words name no card either ("NVIDIA-H100-80GB-HBM3", "Tesla V100").
_VARIANT_WORDS = {
    "PCIE", "SXM", "SXM2", "SXM4", "SXM5", "SXM6", "NVLINK", "NVL", "BAREMETAL", "WK", "WS", "GB",
    "NVIDIA", "GEFORCE", "TESLA", "AMD", "HBM2", "HBM2E", "HBM3", "HBM3E",
}  # fmt: skip
_MEMORY_WORD = re.compile(r"^(\d+)GB?$")
_ALIASES = {
    "A6000": "RTX A6000",
    "A5000": "RTX A5000",
    "A4000": "RTX A4000",
    "RTXA6000": "RTX A6000",
    "RTXA5000": "RTX A5000",
    "RTXA4500": "RTX A4500",
    "RTXA4000": "RTX A4000",
    "RTXPRO6000": "RTX PRO 6000",
    "RTXPRO6000WS": "RTX PRO 6000",
    "RTX PRO 6000": "RTX PRO 6000",
    "RTX 6000 ADA": "RTX 6000 Ada",
    "RTX6000 ADA": "RTX 6000 Ada",
    "RTX 6000ADA": "RTX 6000 Ada",  # Vast.ai's spelling
    "RTX 4000 ADA": "RTX 4000 Ada",
    "RTX4000 ADA": "RTX 4000 Ada",
    "RTX5880 ADA": "RTX 5880 Ada",
    "RTX6000": "RTX 6000",
    "RADEON MI25": "Radeon MI25",
    "RADEON PRO V520": "Radeon Pro V520",
}
_RTX_NUMBER = re.compile(r"^RTX ?(\d{4})$")


class UnknownGpu(ValueError):
    """A GPU name that matches no known family."""


def gpu_family(raw_name: str) -> tuple[str, int | None]:
    """(family, memory named in the raw string or None) for a provider's GPU name."""
    words = re.sub(r"[_\-]+", " ", raw_name.strip().upper()).split()
    memory_hint: int | None = None
    kept: list[str] = []
    for word in words:
        match = _MEMORY_WORD.match(word)
        if match and word not in FAMILIES:
            memory_hint = int(match.group(1))
        elif word not in _VARIANT_WORDS:
            kept.append(word)
    name = " ".join(kept)
    name = _ALIASES.get(name, name)
    if rtx := _RTX_NUMBER.match(name):
        name = f"RTX {rtx.group(1)}"
    if name not in FAMILIES:
        raise UnknownGpu(f"unknown GPU name {raw_name!r}")
    return name, memory_hint


def canonical_gpu(raw_name: str, reported_memory_gb: float | None) -> tuple[str, int]:
    """(canonical name such as "H100 80GB", marketed memory per GPU in GB)."""
    family, hint = gpu_family(raw_name)
    sizes = FAMILIES[family]
    reported = hint if hint is not None else reported_memory_gb
    if reported:
        memory = min(sizes, key=lambda size: abs(size - reported))
        # A report far from every marketed size is a card we have not listed; keep its own number.
        if abs(memory - reported) / memory > 0.12:
            memory = round(reported)
    else:
        memory = sizes[0]
    return f"{family} {memory}GB", memory
