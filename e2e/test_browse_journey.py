"""A visitor browses GPUs: filters, sorts, ranks with weights, pages on, and watches a price move live."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from playwright.sync_api import Page, expect

from e2e.conftest import server_side


def test_browse_filter_rank_and_live_price(page: Page, server_url: str, artifacts: Path) -> None:
    from providers.ingest import apply_offers
    from providers.adapters.base import OfferData
    from providers.models import Offer, Provider

    page.goto(server_url + "/")
    page.get_by_role("link", name="Browse GPUs").click()
    expect(page).to_have_url(server_url + "/browse/")
    expect(page.get_by_role("heading", name="Browse GPUs", level=1)).to_be_visible()
    expect(page.locator("#browse-live")).to_have_attribute("data-state", "live")
    table = page.get_by_role("table", name="GPU offers")
    expect(table.locator("tbody tr")).to_have_count(25)

    # Filter: H100s with capacity now, cheapest first.
    page.get_by_label("GPU", exact=True).select_option("H100 80GB")
    page.get_by_label("Availability", exact=True).select_option("available")
    page.get_by_label("Sort by", exact=True).select_option("price")
    expect(page).to_have_url(server_url + "/browse/?gpu_type=H100%2080GB&provider=&availability=available&max_price=&min_gpu_memory=&sort=price&w_price=5&w_performance=2&w_availability=2&w_reliability=1")
    rows = table.locator("tbody tr")
    expect(rows.first).to_contain_text("H100 80GB")
    count = server_side(lambda: Offer.objects.filter(gpu_type="H100 80GB", availability_status="available").count())
    expect(page.get_by_role("heading", name=f"{count} offers")).to_be_visible()
    prices = [float(t) for t in table.get_by_test_id("offer-price").locator('[data-field="price"]').all_inner_texts()]
    assert prices == sorted(prices) and len(prices) == min(25, count)

    # Rank by "Best match" with price weighted heavily: scores appear, best first.
    page.get_by_label("Sort by", exact=True).select_option("topsis")
    page.get_by_label("Performance weight").fill("0")
    page.get_by_role("button", name="Apply").click()
    expect(table.locator(".score").first).to_be_visible()
    scores = [float(s) for s in table.locator(".score").all_inner_texts()]
    assert scores == sorted(scores, reverse=True)
    page.screenshot(path=artifacts / "browse-ranked.png", full_page=True)

    # A provider refresh changes the price of the first offer shown: the row updates in place.
    first_id = int(rows.first.get_attribute("data-offer-id"))
    page.evaluate("window.__sameLoad = true")

    def reprice() -> str:
        # What a provider refresh does: store the provider's listing, then fan the changes out.
        import asyncio

        from providers.worker import fan_out_price_changes

        offer = Offer.objects.select_related("provider").get(pk=first_id)
        new_price = (offer.price_per_hour * Decimal("0.5")).quantize(Decimal("0.01"))
        listed = [
            OfferData(provider=o.provider.slug, name=o.name, gpu_type=o.gpu_type, gpu_type_raw=o.gpu_type_raw, gpu_count=o.gpu_count,
                      gpu_memory_gb=o.gpu_memory_gb, price_per_hour=new_price if o.pk == first_id else o.price_per_hour,
                      region=o.region, availability_status=o.availability_status, spot_price=o.spot_price, vcpus=o.vcpus, ram_gb=o.ram_gb)
            for o in Offer.objects.filter(provider=offer.provider).select_related("provider")
        ]
        result = apply_offers(Provider.objects.get(pk=offer.provider_id), listed)
        payload = {"provider": offer.provider.slug, "at": result.at.isoformat(), "changes": [c.as_event() for c in result.changes]}
        asyncio.run(fan_out_price_changes("e2e-1", payload))
        return f"{new_price:.2f}"

    new_price = server_side(reprice)
    expect(rows.first.locator('[data-field="price"]')).to_have_text(new_price)
    expect(rows.first).to_have_class("offer-row offer-row--changed")
    assert page.evaluate("window.__sameLoad") is True

    # Next page: more offers, none repeated.
    page.get_by_label("GPU", exact=True).select_option("")
    page.get_by_label("Availability", exact=True).select_option("")
    expect(rows).to_have_count(25)
    first_page = set(rows.evaluate_all("rs => rs.map(r => r.dataset.offerId)"))
    page.get_by_role("link", name="Next 25 offers").click()
    page.wait_for_url("**cursor=**")
    second_page = set(rows.evaluate_all("rs => rs.map(r => r.dataset.offerId)"))
    assert len(second_page) == 25 and not first_page & second_page


def test_bad_filters_explain_themselves(page: Page, server_url: str) -> None:
    response = page.goto(server_url + "/browse/?max_price=-3&w_price=99")
    assert response is not None and response.status == 422
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("price weight must be a whole number from 0 to 10")
    expect(alert).to_contain_text("max_price")


def test_browse_works_on_a_phone(page: Page, server_url: str, artifacts: Path) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(server_url + "/browse/")
    expect(page.get_by_role("heading", name="Browse GPUs", level=1)).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=artifacts / "browse-phone.png", full_page=True)
