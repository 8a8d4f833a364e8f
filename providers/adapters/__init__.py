"""Registry of provider adapters: slug -> dotted path of the adapter class, imported lazily.

Adding a provider means adding a module beside its siblings (same shape) and one line here.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module

from providers.adapters.base import ProviderAdapter

REGISTRY: dict[str, str] = {
    # Serves every provider of the price snapshot in SANDBOX mode (one instance per provider).
    "sandbox": "providers.adapters.sandbox.SandboxAdapter",
    # Filled by the adapters work: "runpod": "providers.adapters.runpod.RunPodAdapter", ...
}


@cache
def adapter_class(slug: str) -> type[ProviderAdapter]:
    try:
        dotted = REGISTRY[slug]
    except KeyError:
        raise KeyError(f"no adapter registered for provider {slug!r}") from None
    module_name, class_name = dotted.rsplit(".", 1)
    cls = getattr(import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, ProviderAdapter)):
        raise TypeError(f"{dotted} is not a ProviderAdapter")
    return cls
