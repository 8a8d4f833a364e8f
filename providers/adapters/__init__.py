"""Registry of provider adapters: slug -> dotted path of the adapter class, imported lazily.

Adding a provider means adding a module beside its siblings (same shape) and one line here, plus
its credentials and API base override in settings (PROVIDER_CREDENTIALS, PROVIDER_API_BASES).
"""

from __future__ import annotations

from functools import cache
from importlib import import_module

import httpx
from django.conf import settings

from providers.adapters.base import ProviderAdapter

# Live providers only: in SANDBOX mode every snapshot provider is served by
# providers.adapters.sandbox.SandboxAdapter, which the worker builds itself.
REGISTRY: dict[str, str] = {
    "aws": "providers.adapters.aws.AwsAdapter",
    "azure": "providers.adapters.azure.AzureAdapter",
    "hyperbolic": "providers.adapters.hyperbolic.HyperbolicAdapter",
    "lambda": "providers.adapters.lambda_cloud.LambdaAdapter",
    "paperspace": "providers.adapters.paperspace.PaperspaceAdapter",
    "runpod": "providers.adapters.runpod.RunPodAdapter",
    "tensordock": "providers.adapters.tensordock.TensorDockAdapter",
    "vast": "providers.adapters.vast.VastAdapter",
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


def build_adapter(slug: str, client: httpx.AsyncClient) -> ProviderAdapter:
    """The adapter for `slug` on the shared client, with the credentials and API base override
    the settings hold for it (empty credentials and the provider's own base when unset)."""
    cls = adapter_class(slug)
    credentials = {name: value for name, value in settings.PROVIDER_CREDENTIALS.get(slug, {}).items() if value}
    return cls(client, credentials, settings.PROVIDER_API_BASES.get(slug))
