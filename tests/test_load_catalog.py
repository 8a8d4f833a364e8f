"""`load_catalog` fills the sandbox catalog from the real snapshot, and re-running it is safe."""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from providers.models import Availability, Offer, PriceSource, Provider


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("load_catalog", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_it_loads_every_offer_of_the_snapshot() -> None:
    assert "2201 offers from 25 providers (2201 new" in run()
    assert Offer.objects.count() == 2201
    assert Provider.objects.get(slug="vast").name == "Vast.ai"
    g5 = Offer.objects.get(provider__slug="aws", name="g5.2xlarge", region="us-east-1")
    assert (g5.gpu_type, g5.gpu_count, g5.price_per_hour, g5.spot_price) == ("A10G 24GB", 1, Decimal("1.2120"), Decimal("0.4859"))
    assert g5.source == PriceSource.SNAPSHOT and g5.list_price == g5.price_per_hour


@pytest.mark.django_db
def test_the_sandbox_assigns_a_realistic_mix_of_availability() -> None:
    run()
    shares = {status: Offer.objects.filter(availability_status=status).count() / 2201 for status in Availability.values}
    assert 0.65 < shares["available"] < 0.85
    assert 0.10 < shares["limited"] < 0.25
    assert 0.03 < shares["unavailable"] < 0.15


@pytest.mark.django_db
def test_reloading_keeps_market_prices_unless_reset() -> None:
    run()
    offer = Offer.objects.get(provider__slug="aws", name="g5.2xlarge", region="us-east-1")
    Offer.objects.filter(pk=offer.pk).update(price_per_hour=Decimal("9.9"), availability_status="unavailable")

    assert "0 new, 2201 refreshed" in run()
    offer.refresh_from_db()
    assert offer.price_per_hour == Decimal("9.9") and Offer.objects.count() == 2201

    assert "prices reset" in run("--reset")
    offer.refresh_from_db()
    assert offer.price_per_hour == Decimal("1.212")


@pytest.mark.django_db
def test_a_bad_file_is_refused_without_loading_anything(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "provider,instance_type,gpu_type,gpu_count,gpu_memory_gb,vcpus,ram_gb,price_per_hour,spot_price,region,source_file\n"
        "aws,g5.xlarge,A10G,1,22.4,4,16,1.006,,us-east-1,x\n"
        "aws,g5.2xlarge,A10G,1,22.4,8,32,cheap,,us-east-1,x\n"
    )
    with pytest.raises(CommandError, match="line 3: price_per_hour 'cheap' is not a number"):
        run("--path", str(bad))
    assert Offer.objects.count() == 0
