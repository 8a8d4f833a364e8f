"""Fixtures for pods: the catalog, a quiet simulated cloud on a clock the test moves, money."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from billing import ledger
from billing.models import LedgerKind
from pods import cloud
from pods.actions import PodConfig
from providers.adapters.sandbox import MemoryInstanceStore, SandboxCloud, SandboxMarket, quiet_settings
from pods.models import Rental
from providers.models import Offer
from providers.snapshot import read_snapshot

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ada@example.com"
A100_PROVIDER, A100_NAME, A100_REGION = "cudo", "intel-ice-lake-a100-pci_1x2v4gb", "us-carlsbad-1"


class Clock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class World:
    cloud: SandboxCloud
    clock: Clock
    store: MemoryInstanceStore

    def boot(self) -> None:
        """Moves the simulated clock past any instance's pending and boot time."""
        self.clock.advance(10_000)


@pytest.fixture
def world(catalog: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    # Tests run inside one transaction that never commits: run after-commit work (emails, page
    # announcements) at once, as a committed transaction would.
    from django.db import transaction

    monkeypatch.setattr(transaction, "on_commit", lambda func, using=None, robust=False: func())
    clock = Clock()
    store = MemoryInstanceStore()
    sandbox = SandboxCloud(SandboxMarket(read_snapshot(), quiet_settings(move_share=0.0, availability_change_chance=0.0, provision_failure_rate=0.0), seed=1), store, clock)
    cloud.use_sandbox_cloud(sandbox)
    yield World(sandbox, clock, store)
    cloud.use_sandbox_cloud(None)
    cloud._sandbox.clear()


def a100(gpu_count: int = 1) -> Offer:
    offer = Offer.objects.get(provider__slug=A100_PROVIDER, name=A100_NAME, region=A100_REGION)
    return offer


def fund(user: Any, amount: str = "100") -> None:
    ledger.post(user, Decimal(amount), LedgerKind.TOPUP, f"test-topup:{user.pk}:{amount}:{ledger.ledger_sum(user)}", "test money")


def config(**overrides: Any) -> PodConfig:
    values: dict[str, Any] = {"name": "trainer", "gpu_count": 1, "template": "pytorch", "disk_gb": 50, "ssh_public_key": SSH_KEY}
    values.update(overrides)
    return PodConfig(**values)


def make_rental(user: Any) -> Rental:
    """A pod row in draft, made directly (no catalog, no provider): for the state machine and websockets."""
    return Rental.objects.create(
        user=user, name="trainer", request_key="k", provider_slug="cudo", offer_name="intel-ice-lake-a100-pci_1x2v4gb", region="us-carlsbad-1",
        gpu_type="A100 80GB", gpu_count=1, template="pytorch", image="pytorch/pytorch", ports=[{"number": 8888, "label": "Jupyter", "scheme": "http"}],
        ssh_public_key=SSH_KEY, provider_price_per_hour=Decimal("1.3734"), markup_pct=Decimal("10"), price_per_hour=Decimal("1.5107"),
    )
