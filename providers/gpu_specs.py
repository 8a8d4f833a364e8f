"""Performance of each GPU family, for sorting and ranking offers by what they compute.

Dense FP16/BF16 tensor throughput in TFLOPS per GPU (no sparsity), from the vendors' datasheets;
for cards without tensor cores, plain FP16 or FP32 throughput, whichever the card is faster at.
Where a family ships in several form factors the most common cloud variant is taken (H100: SXM).
These are approximate peak figures: good for ordering offers, not for predicting a job's time.
A family missing here has no figure (`None`) rather than a guess.
"""

from __future__ import annotations

DENSE_TFLOPS: dict[str, float] = {
    "B300": 2250.0,
    "B200": 2250.0,
    "GH200": 989.0,
    "H200": 989.0,
    "H100": 989.0,
    "A100": 312.0,
    "A800": 312.0,
    "L40S": 362.0,
    "L40": 181.0,
    "L4": 121.0,
    "A40": 150.0,
    "A30": 165.0,
    "A10": 125.0,
    "A10G": 70.0,
    "V100": 125.0,
    "P100": 18.7,
    "T4": 65.0,
    "K80": 8.7,
    "M60": 9.6,
    "RTX 6000 Ada": 364.0,
    "RTX A6000": 155.0,
    "RTX A5000": 111.0,
    "RTX A4500": 95.0,
    "RTX A4000": 77.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
}


def family_of(gpu_type: str) -> str:
    """"H100 80GB" -> "H100"; the canonical name is the family plus its memory."""
    return gpu_type.rsplit(" ", 1)[0] if gpu_type.endswith("GB") else gpu_type


def tflops(gpu_type: str, gpu_count: int) -> float | None:
    per_gpu = DENSE_TFLOPS.get(family_of(gpu_type))
    return None if per_gpu is None else round(per_gpu * gpu_count, 1)
