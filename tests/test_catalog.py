"""The landing table's best offer per GPU type, chosen with corecalc's TOPSIS."""

from __future__ import annotations

from decimal import Decimal

import pytest

from providers.catalog import best_offer, best_offers, featured_gpu_types
from providers.models import Availability, Offer, Provider


def make_offer(provider: Provider, name: str, price: str, status: str = Availability.AVAILABLE, gpus: int = 1, gpu: str = "H100 80GB") -> Offer:
    return Offer.objects.create(
        provider=provider, name=name, gpu_type=gpu, gpu_type_raw=gpu, gpu_count=gpus, gpu_memory_gb=80,
        price_per_hour=Decimal(price), list_price=Decimal(price), availability_status=status, region="us-east-1",
    )


@pytest.fixture
def acme(db: None) -> Provider:
    return Provider.objects.create(slug="acme", name="Acme Cloud")


def test_it_prefers_the_lowest_price_per_gpu(acme: Provider) -> None:
    make_offer(acme, "one", "3.00")
    eight = make_offer(acme, "eight", "16.00", gpus=8)  # $2.00 per GPU-hour
    make_offer(acme, "two", "5.00", gpus=2)
    assert best_offer(list(Offer.objects.all())) == eight


def test_it_never_picks_an_offer_without_capacity(acme: Provider) -> None:
    make_offer(acme, "gone", "0.50", status=Availability.UNAVAILABLE)
    there = make_offer(acme, "there", "2.00")
    assert best_offer(list(Offer.objects.all())) == there
    assert best_offer([o for o in Offer.objects.all() if o.name == "gone"]) is None


def test_capacity_outweighs_a_small_saving(acme: Provider) -> None:
    make_offer(acme, "scarce", "1.98", status=Availability.LIMITED)
    sure = make_offer(acme, "sure", "2.00")
    assert best_offer(list(Offer.objects.all())) == sure


def test_a_row_summarises_its_gpu_type(acme: Provider) -> None:
    other = Provider.objects.create(slug="other", name="Other")
    make_offer(acme, "a", "2.00")
    make_offer(acme, "b", "2.50", status=Availability.LIMITED)
    make_offer(other, "c", "1.00", status=Availability.UNAVAILABLE)
    make_offer(other, "d", "0.40", gpu="T4 16GB")
    rows = {row.gpu_type: row for row in best_offers()}
    h100 = rows["H100 80GB"]
    assert (h100.price_per_gpu_hour, h100.provider_name, h100.offer_count, h100.provider_count) == (Decimal("2.00"), "Acme Cloud", 3, 2)
    assert h100.availability_pct == 50  # (1 + 0.5 + 0) / 3
    assert h100.row_id == "gpu-row-h100-80gb"
    winner = Offer.objects.get(name="a")
    assert (h100.last_updated, h100.source) == (winner.last_updated, "Snapshot")  # the shown price's own age
    assert list(rows) == ["H100 80GB", "T4 16GB"]  # most offers first
    assert [r.gpu_type for r in best_offers(["T4 16GB"])] == ["T4 16GB"]


def test_featured_types_are_the_most_offered(catalog: None) -> None:
    featured = featured_gpu_types(3)
    assert featured == ["H100 80GB", "A100 80GB", "A100 40GB"]
