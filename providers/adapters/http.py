"""What every adapter does the same way: one HTTP call mapped to AdapterError, field readers that
reject bad values precisely, and the rule for partly unreadable lists.

Failure mapping (the engine's circuit breaker and backoff read `kind`):
  httpx.TimeoutException -> TIMEOUT; other transport errors (refused, reset, DNS) -> UNAVAILABLE;
  429 -> RATE_LIMITED with `retry_after` from Retry-After (seconds or an HTTP date);
  401/403 -> AUTH; 5xx -> UNAVAILABLE; any other non-2xx or a body that is not JSON -> BAD_RESPONSE.
Messages name the status and the URL path, never the query string, a header or the body: the
body may echo a credential, and a query string may carry one.

Partial lists: an item that cannot be read (missing field, wrong type) raises `BadItem` inside the
adapter's parser; `collect` skips it, keeps the good ones, and leaves one reason per skipped item
in `adapter.skipped` (logged as a warning with the count). A GPU name we do not know is skipped the
same way. Only when nothing at all could be read from a non-empty list is the answer a
BAD_RESPONSE: that is a changed format, not a glitch in one item.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from providers.adapters.base import AdapterError, FailureKind, ProviderAdapter
from providers.gpu_names import UnknownGpu

logger = logging.getLogger("gpubroker.providers.adapters")

# A paginated listing longer than this is a provider repeating its cursor, not a real catalog.
MAX_PAGES = 100
# How many calls one adapter keeps in flight when a listing needs one call per location or type.
PARALLEL_CALLS = 4

T = TypeVar("T")
R = TypeVar("R")
_MISSING = object()


class BadItem(ValueError):
    """One listed item the adapter cannot read; `collect` skips it and records why."""


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date (RFC 9110)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # an HTTP date is GMT by definition
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def _where(url: str) -> str:
    parts = urlsplit(url)
    return parts.path or "/"


async def request_json(
    adapter: ProviderAdapter,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str | int] | None = None,
    json: Any = None,
    content: bytes | None = None,
    classify: Callable[[httpx.Response], AdapterError | None] | None = None,
) -> Any:
    """The decoded JSON body of one call, or AdapterError. `classify` lets a provider that reports
    throttling or auth failures in its own way (AWS: HTTP 400 with a typed body) say so first."""
    where = _where(url)
    try:
        response = await adapter.client.request(method, url, headers=headers, params=params, json=json, content=content)
    except httpx.TimeoutException:
        raise adapter.error(FailureKind.TIMEOUT, f"no answer from {where} in time") from None
    except httpx.TransportError as exc:
        raise adapter.error(FailureKind.UNAVAILABLE, f"cannot reach {where} ({type(exc).__name__})") from None
    status = response.status_code
    if status >= 300:
        if classify is not None and (error := classify(response)) is not None:
            raise error
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            hint = f", retry after {retry_after:g} s" if retry_after is not None else ""
            raise adapter.error(FailureKind.RATE_LIMITED, f"HTTP 429 from {where}{hint}", retry_after)
        if status in (401, 403):
            raise adapter.error(FailureKind.AUTH, f"HTTP {status} from {where}: credentials missing or refused")
        if status >= 500:
            raise adapter.error(FailureKind.UNAVAILABLE, f"HTTP {status} from {where}")
        raise adapter.error(FailureKind.BAD_RESPONSE, f"HTTP {status} from {where}")
    try:
        return response.json()
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        raise adapter.error(FailureKind.BAD_RESPONSE, f"malformed JSON from {where}") from None


async def gather_limited(calls: Iterable[Awaitable[T]], limit: int = PARALLEL_CALLS) -> list[T]:
    """Results of `calls` in order, at most `limit` in flight. The first failure cancels the rest
    and is raised as it is: one 429 or 401 speaks for the whole provider."""
    semaphore = asyncio.Semaphore(limit)

    async def one(call: Awaitable[T]) -> T:
        async with semaphore:
            return await call

    pending = list(calls)
    tasks = [asyncio.ensure_future(one(call)) for call in pending]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Calls still queued behind the semaphore were never started: close them quietly.
        for call in pending:
            if inspect.iscoroutine(call) and inspect.getcoroutinestate(call) == inspect.CORO_CREATED:
                call.close()
        raise


def field(obj: Any, path: str, default: Any = _MISSING) -> Any:
    """`obj["a"]["b"]` for path "a.b"; BadItem naming the path when a step is missing or not an
    object. With `default`, a missing or null value gives the default instead."""
    current = obj
    for key in path.split("."):
        if not isinstance(current, Mapping):
            raise BadItem(f"expected an object around {path!r}")
        current = current.get(key)
        if current is None:
            if default is not _MISSING:
                return default
            raise BadItem(f"missing field {path!r}")
    return current


def typed(obj: Any, path: str, kind: type[T]) -> T:
    """A required field of one JSON type (bool is never accepted as a number)."""
    value = field(obj, path)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise BadItem(f"field {path!r} should be {kind.__name__}, got {type(value).__name__}")
    return value


def decimal_value(value: Any, what: str) -> Decimal:
    """A finite, non-negative Decimal from a JSON number or numeric string. Floats go through
    str() so 0.44 stays 0.44 instead of its binary expansion."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadItem(f"{what} should be a number, got {type(value).__name__}")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise BadItem(f"{what} should be a number, got {value!r}") from None
    if not number.is_finite() or number < 0:
        raise BadItem(f"{what} should be a finite non-negative number, got {value!r}")
    return number


def int_value(value: Any, what: str) -> int:
    """A whole number from a JSON number or numeric string ("192" in AWS attributes, 16.0 in Vast)."""
    number = decimal_value(value, what)
    if number != number.to_integral_value():
        raise BadItem(f"{what} should be a whole number, got {value!r}")
    return int(number)


def optional_decimal(obj: Any, path: str) -> Decimal | None:
    """A numeric field that providers may leave out or send as null."""
    value = field(obj, path, None)
    return None if value is None else decimal_value(value, path)


def optional_int(obj: Any, path: str) -> int | None:
    """A count that providers may leave out; fractions are cut (Vast's 15.5 effective cores)."""
    value = optional_decimal(obj, path)
    return None if value is None else int(value)


def optional_str(obj: Any, path: str, default: str = "") -> str:
    value = field(obj, path, default)
    if not isinstance(value, str):
        raise BadItem(f"field {path!r} should be str, got {type(value).__name__}")
    return value


def collect(adapter: ProviderAdapter, items: Iterable[T], parse: Callable[[T], Iterable[R]]) -> list[R]:
    """What `parse` reads from every readable item (offers, or rows an adapter folds into offers);
    see the module docstring for the skipping rule."""
    offers: list[R] = []
    skipped: list[str] = []
    malformed = total = 0
    for index, item in enumerate(items):
        total += 1
        try:
            offers.extend(parse(item))
        except BadItem as exc:
            malformed += 1
            skipped.append(f"item {index}: {exc}")
        except UnknownGpu as exc:
            skipped.append(f"item {index}: {exc}")
    adapter.skipped = skipped
    if skipped:
        logger.warning("%s: skipped %d of %d listed items: %s", adapter.slug, len(skipped), total, "; ".join(skipped[:3]))
    if malformed and not offers:
        raise adapter.error(FailureKind.BAD_RESPONSE, f"none of {total} listed items could be read ({skipped[0]})")
    return offers


def listing(adapter: ProviderAdapter, body: Any, path: str) -> list[Any]:
    """The list at `path` in a response body, or BAD_RESPONSE: without it there is nothing to skip."""
    try:
        value = field(body, path)
    except BadItem as exc:
        raise adapter.error(FailureKind.BAD_RESPONSE, str(exc)) from None
    if not isinstance(value, list):
        raise adapter.error(FailureKind.BAD_RESPONSE, f"field {path!r} should be a list, got {type(value).__name__}")
    return value


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
