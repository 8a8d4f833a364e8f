"""The helpers every adapter shares: Retry-After, numbers from JSON, partial lists."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from providers.adapters.base import AdapterError, FailureKind, OfferData
from providers.adapters.http import BadItem, collect, decimal_value, int_value, parse_retry_after
from providers.adapters.vast import VastAdapter
from providers.gpu_names import canonical_gpu

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("17", 17.0),
        (" 2.5 ", 2.5),
        ("Sun, 01 Mar 2026 12:01:30 GMT", 90.0),
        ("Sun, 01 Mar 2026 11:59:00 GMT", 0.0),  # already past: retry now
        ("-3", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_it_reads_retry_after_as_seconds_or_an_http_date(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


def test_it_keeps_float_prices_exact() -> None:
    assert decimal_value(0.44, "price") == Decimal("0.44")
    assert decimal_value("55.0400000000", "price") == Decimal("55.04")


@pytest.mark.parametrize("value", [True, None, "NaN", "Infinity", -1, "1,5", [1]])
def test_it_refuses_what_is_not_a_price(value: Any) -> None:
    with pytest.raises(BadItem):
        decimal_value(value, "price")


def test_it_refuses_a_fractional_count() -> None:
    assert int_value("192", "vcpu") == 192
    with pytest.raises(BadItem, match="whole number"):
        int_value(1.5, "num_gpus")


def _offer(item: Any) -> list[OfferData]:
    if not isinstance(item, dict):
        raise BadItem("not an object")
    gpu_type, memory = canonical_gpu(item["gpu"], None)
    return [OfferData("vast", item["gpu"], gpu_type, item["gpu"], 1, memory, Decimal("1"), "x")]


@pytest.fixture
async def adapter() -> AsyncIterator[VastAdapter]:
    async with httpx.AsyncClient() as client:
        yield VastAdapter(client)


def test_a_list_with_nothing_readable_is_a_bad_response(adapter: VastAdapter) -> None:
    with pytest.raises(AdapterError) as caught:
        collect(adapter, [1, "two"], _offer)
    assert (caught.value.kind, caught.value.detail) == (FailureKind.BAD_RESPONSE, "none of 2 listed items could be read (item 0: not an object)")


def test_a_list_of_unknown_cards_is_empty_not_an_error(adapter: VastAdapter) -> None:
    assert collect(adapter, [{"gpu": "Voodoo 5"}], _offer) == []
    assert adapter.skipped == ["item 0: unknown GPU name 'Voodoo 5'"]


def test_skipped_items_are_counted_and_logged(adapter: VastAdapter, caplog: pytest.LogCaptureFixture) -> None:
    offers = collect(adapter, [{"gpu": "H100"}, 3], _offer)
    assert [offer.gpu_type for offer in offers] == ["H100 80GB"]
    assert adapter.skipped == ["item 1: not an object"]
    assert "vast: skipped 1 of 2 listed items: item 1: not an object" in caplog.text
