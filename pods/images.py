"""The curated pod templates: what image a pod boots and which ports it serves."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Port:
    number: int
    label: str
    scheme: str  # "http" gets a URL on the pod's host; "tcp" is shown as host:port


@dataclass(frozen=True)
class PodTemplate:
    slug: str
    name: str
    image: str
    ports: tuple[Port, ...]
    min_disk_gb: int


TEMPLATES: dict[str, PodTemplate] = {t.slug: t for t in (
    PodTemplate("pytorch", "PyTorch 2.5 (CUDA 12.4)", "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime", (Port(8888, "Jupyter", "http"),), 30),
    PodTemplate("tensorflow", "TensorFlow 2.18 (GPU)", "tensorflow/tensorflow:2.18.0-gpu-jupyter", (Port(8888, "Jupyter", "http"), Port(6006, "TensorBoard", "http")), 30),
    PodTemplate("vllm", "vLLM OpenAI-compatible server", "vllm/vllm-openai:v0.6.4", (Port(8000, "OpenAI API", "http"),), 80),
    PodTemplate("comfyui", "ComfyUI", "yanwk/comfyui-boot:cu124-slim", (Port(8188, "ComfyUI", "http"),), 50),
    PodTemplate("jupyter", "Jupyter (CUDA base)", "quay.io/jupyter/pytorch-notebook:cuda12-latest", (Port(8888, "JupyterLab", "http"),), 20),
)}


def port_rows(ports: list[dict[str, object]]) -> list[Port]:
    return [Port(int(p["number"]), str(p["label"]), str(p["scheme"])) for p in ports]  # type: ignore[call-overload]
