"""The emulator's objects and what each API call does to them, with Stripe's shapes and errors.

Objects follow Stripe's API as of the SDK's pinned version (basil and later): a subscription's
period lives on its items, an invoice names its subscription under
`parent.subscription_details.subscription`. Every mutation emits the events Stripe would.
"""

from __future__ import annotations

import calendar
import copy
import json
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import stripe

from billing.emulator import cards
from billing.emulator.webhooks import WebhookSender

Obj = dict[str, Any]
KINDS = ("customer", "product", "price", "checkout.session", "subscription", "invoice", "payment_intent", "billing_portal.session", "event")
SESSION_LIFETIME_SECONDS = 24 * 3600
# Stripe keeps an idempotency key's answer for 24 hours; the cap bounds memory against a client
# that sends a fresh key with every request (the oldest answers go first).
IDEMPOTENCY_TTL_SECONDS = 24 * 3600
IDEMPOTENCY_MAX_KEYS = 10_000


class StripeError(Exception):
    """An API error in Stripe's format: `{"error": {"type", "message", "code", "param"}}`."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", code: str | None = None, param: str | None = None, decline_code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param, self.decline_code = status, message, type, code, param, decline_code

    def body(self) -> Obj:
        error: Obj = {"type": self.type, "message": self.message}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param:
            error["param"] = self.param
        if self.decline_code:
            error["decline_code"] = self.decline_code
        return {"error": error}


def missing(kind: str, object_id: str, param: str = "id") -> StripeError:
    return StripeError(404, f"No such {kind}: '{object_id}'", code="resource_missing", param=param)


def required(param: str) -> StripeError:
    return StripeError(400, f"Missing required param: {param}.", code="parameter_missing", param=param)


def add_interval(ts: int, interval: str, count: int = 1) -> int:
    """`ts` moved on by whole calendar months or years, as Stripe bills (31 Jan + 1 month = 28/29 Feb)."""
    start = datetime.fromtimestamp(ts, tz=timezone.utc)
    months = count * (12 if interval == "year" else 1)
    if interval in ("day", "week"):
        return ts + count * (86400 if interval == "day" else 7 * 86400)
    year, month = divmod(start.month - 1 + months, 12)
    year += start.year
    day = min(start.day, calendar.monthrange(year, month + 1)[1])
    return int(start.replace(year=year, month=month + 1, day=day).timestamp())


def _flag(value: Any) -> bool:
    return str(value).lower() in {"true", "1"}


def _int(params: Obj, name: str) -> int:
    try:
        return int(params[name])
    except KeyError:
        raise required(name) from None
    except (TypeError, ValueError):
        raise StripeError(400, f"Invalid integer: {params[name]}", code="parameter_invalid_integer", param=name) from None


def _metadata(params: Obj, name: str = "metadata") -> dict[str, str]:
    value = params.get(name, {})
    if value == "":
        return {}
    if not isinstance(value, dict):
        raise StripeError(400, f"Invalid object: {name} must be a hash", code="parameter_invalid_object", param=name)
    return {str(k): str(v) for k, v in value.items()}


class IdempotencyStore:
    """Answers by idempotency key, each kept 24 hours as at Stripe, at most `max_keys` of them."""

    def __init__(self, clock: Callable[[], float], ttl_seconds: float = IDEMPOTENCY_TTL_SECONDS, max_keys: int = IDEMPOTENCY_MAX_KEYS) -> None:
        self.clock, self.ttl_seconds, self.max_keys = clock, ttl_seconds, max_keys
        self._answers: OrderedDict[str, tuple[float, str, int, Obj]] = OrderedDict()  # oldest first

    def __len__(self) -> int:
        return len(self._answers)

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def get(self, key: str) -> tuple[str, int, Obj] | None:
        """(request fingerprint, status, body) of the first request with `key`, if still kept."""
        self._expire()
        found = self._answers.get(key)
        return found[1:] if found else None

    def put(self, key: str, fingerprint: str, status: int, body: Obj) -> None:
        self._expire()
        self._answers[key] = (self.clock(), fingerprint, status, body)
        while len(self._answers) > self.max_keys:
            self._answers.popitem(last=False)

    def _expire(self) -> None:
        cutoff = self.clock() - self.ttl_seconds
        while self._answers:
            stored_at = next(iter(self._answers.values()))[0]
            if stored_at > cutoff:
                break
            self._answers.popitem(last=False)


class Emulator:
    """All state behind one lock; webhooks leave through the sender after the lock is released."""

    def __init__(self, public_url: str, webhooks: WebhookSender, *, state_file: Path | None = None, clock: Callable[[], float] = time.time) -> None:
        self.public_url = public_url.rstrip("/")
        self.webhooks = webhooks
        self.state_file = state_file
        self.clock = clock
        self.lock = threading.RLock()
        self.db: dict[str, dict[str, Obj]] = {kind: {} for kind in KINDS}
        self.idempotency = IdempotencyStore(clock)
        self.saved_cards: dict[str, str] = {}  # customer id -> card number used at checkout (for renewals)
        self._pending: list[Obj] = []
        if state_file and state_file.exists():
            saved = json.loads(state_file.read_text())
            self.db.update(saved["db"])
            self.saved_cards = saved.get("saved_cards", {})

    # --- plumbing -------------------------------------------------------------------------

    def now(self) -> int:
        return int(self.clock())

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{secrets.token_urlsafe(18).replace('-', 'A').replace('_', 'z')}"

    def get(self, kind: str, object_id: str, param: str = "id") -> Obj:
        found = self.db[kind].get(object_id)
        if found is None:
            raise missing(kind.split(".")[-1].replace("_", " "), object_id, param)
        return found

    def emit(self, type_: str, obj: Obj, previous: Obj | None = None) -> None:
        data: Obj = {"object": copy.deepcopy(public(obj))}
        if previous:
            data["previous_attributes"] = previous
        event = {
            "id": self.new_id("evt"),
            "object": "event",
            "api_version": stripe.api_version,
            "created": self.now(),
            "data": data,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": type_,
        }
        self.db["event"][event["id"]] = event
        self._pending.append(event)

    def commit(self) -> None:
        """Saves the state (when a state file is set) and hands the queued events to the sender."""
        with self.lock:
            events, self._pending = self._pending, []
            if self.state_file:
                tmp = self.state_file.with_suffix(".tmp")
                tmp.write_text(json.dumps({"db": self.db, "saved_cards": self.saved_cards}))
                os.replace(tmp, self.state_file)
        for event in events:
            self.webhooks.send(event)

    def expand(self, obj: Obj, paths: list[str]) -> Obj:
        out = copy.deepcopy(obj)
        for path in paths:
            head, _, rest = path.partition(".")
            value = out.get(head)
            if isinstance(value, str):
                for kind in KINDS:
                    if value in self.db[kind]:
                        out[head] = self.expand(self.db[kind][value], [rest] if rest else [])
                        break
            elif isinstance(value, dict) and rest:
                out[head] = self.expand(value, [rest])
        return out

    def listing(self, items: list[Obj], url: str, limit: Any = 10) -> Obj:
        try:
            limit = max(1, min(100, int(limit)))
        except (TypeError, ValueError):
            raise StripeError(400, "Invalid integer: limit", param="limit") from None
        items = sorted(items, key=lambda o: o.get("created", 0), reverse=True)
        return {"object": "list", "data": copy.deepcopy(items[:limit]), "has_more": len(items) > limit, "url": url}

    # --- customers, products, prices ------------------------------------------------------

    def create_customer(self, params: Obj) -> Obj:
        customer = {
            "id": self.new_id("cus"), "object": "customer", "created": self.now(), "livemode": False,
            "email": params.get("email") or None, "name": params.get("name") or None,
            "metadata": _metadata(params), "invoice_prefix": secrets.token_hex(4).upper(), "next_invoice_sequence": 1,
        }
        self.db["customer"][customer["id"]] = customer
        self.emit("customer.created", customer)
        return customer

    def create_product(self, params: Obj) -> Obj:
        if not params.get("name"):
            raise required("name")
        product = {
            "id": self.new_id("prod"), "object": "product", "active": True, "created": self.now(), "livemode": False,
            "name": params["name"], "description": params.get("description") or None, "metadata": _metadata(params),
        }
        self.db["product"][product["id"]] = product
        return product

    def create_price(self, params: Obj) -> Obj:
        if not params.get("currency"):
            raise required("currency")
        amount = _int(params, "unit_amount")
        if amount < 0:
            raise StripeError(400, "This value must be greater than or equal to 0.", param="unit_amount")
        if params.get("product"):
            product = self.get("product", params["product"], "product")
        elif isinstance(params.get("product_data"), dict):
            product = self.create_product(params["product_data"])
        else:
            raise required("product")
        lookup_key = params.get("lookup_key") or None
        if lookup_key:
            holder = next((p for p in self.db["price"].values() if p["lookup_key"] == lookup_key), None)
            if holder and not _flag(params.get("transfer_lookup_key")):
                raise StripeError(400, f"A price ({holder['id']}) already uses that lookup key.", param="lookup_key")
            if holder:
                holder["lookup_key"] = None
        recurring = params.get("recurring")
        if recurring is not None:
            if not isinstance(recurring, dict) or recurring.get("interval") not in ("day", "week", "month", "year"):
                raise StripeError(400, "Invalid recurring[interval]: must be one of day, week, month, or year", param="recurring[interval]")
            recurring = {"interval": recurring["interval"], "interval_count": int(recurring.get("interval_count", 1)), "usage_type": "licensed", "aggregate_usage": None, "trial_period_days": None}
        price = {
            "id": self.new_id("price"), "object": "price", "active": True, "billing_scheme": "per_unit", "created": self.now(),
            "currency": params["currency"].lower(), "livemode": False, "lookup_key": lookup_key, "metadata": _metadata(params),
            "nickname": params.get("nickname") or None, "product": product["id"], "recurring": recurring,
            "type": "recurring" if recurring else "one_time", "unit_amount": amount, "unit_amount_decimal": str(amount),
        }
        self.db["price"][price["id"]] = price
        return price

    def list_prices(self, params: Obj) -> Obj:
        prices = list(self.db["price"].values())
        keys = params.get("lookup_keys")
        if keys is not None:
            keys = keys if isinstance(keys, list) else [keys]
            prices = [p for p in prices if p["lookup_key"] in keys]
        if "active" in params:
            prices = [p for p in prices if p["active"] == _flag(params["active"])]
        if params.get("product"):
            prices = [p for p in prices if p["product"] == params["product"]]
        return self.listing(prices, "/v1/prices", params.get("limit", 10))

    def _inline_price(self, data: Obj, param: str) -> Obj:
        if not isinstance(data.get("product_data"), dict) and not data.get("product"):
            raise required(f"{param}[product_data]")
        if not data.get("currency"):
            raise required(f"{param}[currency]")
        try:
            return self.create_price(data)
        except StripeError as exc:
            exc.param = f"{param}[{exc.param}]" if exc.param else param
            raise

    # --- checkout sessions ----------------------------------------------------------------

    def create_session(self, params: Obj) -> Obj:
        mode = params.get("mode")
        if mode not in ("payment", "subscription", "setup"):
            raise StripeError(400, "Invalid mode: must be one of payment, setup, or subscription", param="mode") if mode else required("mode")
        if mode == "setup":
            raise StripeError(400, "The emulator implements mode=subscription and mode=payment (asked for setup).", param="mode")
        if not params.get("success_url"):
            raise required("success_url")
        items = params.get("line_items")
        if not isinstance(items, list) or not items:
            raise required("line_items")
        line_items, total, currency = [], 0, None
        for index, item in enumerate(items):
            if isinstance(item, dict) and isinstance(item.get("price_data"), dict) and not item.get("price"):
                # Stripe makes an inline one-time (or recurring) price for the session.
                item = {**item, "price": self._inline_price(item["price_data"], f"line_items[{index}][price_data]")["id"]}
            if not isinstance(item, dict) or not item.get("price"):
                raise required(f"line_items[{index}][price]")
            price = self.get("price", item["price"], f"line_items[{index}][price]")
            if mode == "subscription" and not price["recurring"]:
                raise StripeError(400, "You must provide at least one recurring price in `subscription` mode when using prices.", param=f"line_items[{index}][price]")
            if mode == "payment" and price["recurring"]:
                raise StripeError(400, "You specified `payment` mode but passed a recurring price. Either switch to `subscription` mode or use only one-time prices.", param=f"line_items[{index}][price]")
            quantity = int(item.get("quantity", 1))
            if quantity < 1:
                raise StripeError(400, "Quantity must be greater than 0.", param=f"line_items[{index}][quantity]")
            currency = currency or price["currency"]
            total += price["unit_amount"] * quantity
            line_items.append({"price": price["id"], "quantity": quantity})
        if params.get("customer") and params.get("customer_email"):
            raise StripeError(400, "You may only specify one of these parameters: customer, customer_email.", param="customer_email")
        if params.get("customer"):
            self.get("customer", params["customer"], "customer")
        created = self.now()
        expires_at = int(params.get("expires_at") or created + SESSION_LIFETIME_SECONDS)
        if not 1800 <= expires_at - created <= SESSION_LIFETIME_SECONDS:
            raise StripeError(400, "The `expires_at` timestamp must be between 30 minutes and 24 hours from Checkout Session creation.", param="expires_at")
        session_id = self.new_id("cs_test")
        session = {
            "id": session_id, "object": "checkout.session", "after_expiration": None, "allow_promotion_codes": None,
            "amount_subtotal": total, "amount_total": total, "billing_address_collection": None,
            "cancel_url": params.get("cancel_url") or None, "client_reference_id": params.get("client_reference_id") or None,
            "created": created, "currency": currency, "customer": params.get("customer") or None,
            "customer_creation": None, "customer_details": None, "customer_email": params.get("customer_email") or None,
            "expires_at": expires_at, "invoice": None, "livemode": False, "locale": None, "metadata": _metadata(params),
            "mode": mode, "payment_intent": None, "payment_method_types": ["card"], "payment_status": "unpaid",
            "status": "open", "subscription": None, "success_url": params["success_url"], "ui_mode": "hosted",
            "url": f"{self.public_url}/c/pay/{session_id}",
            # Kept for the hosted page and fulfilment; Stripe shows them through list_line_items.
            "_line_items": line_items, "_subscription_metadata": _metadata(params.get("subscription_data") or {}, "metadata"),
        }
        self.db["checkout.session"][session_id] = session
        return session

    def session(self, session_id: str) -> Obj:
        session = self.get("checkout.session", session_id)
        if session["status"] == "open" and self.now() >= session["expires_at"]:
            self._expire(session)
        return session

    def _expire(self, session: Obj) -> None:
        session.update(status="expired", url=None)
        self.emit("checkout.session.expired", session)

    def expire_session(self, session_id: str) -> Obj:
        session = self.session(session_id)
        if session["status"] != "open":
            raise StripeError(400, f"Only Checkout Sessions with a status in [\"open\"] can be expired. This session has a status of \"{session['status']}\".", param="session")
        self._expire(session)
        return session

    def pay_session(self, session_id: str, form: dict[str, str]) -> tuple[dict[str, str], cards.Decline | None]:
        """The hosted page's submit: field errors, or a decline, or ({}, None) once paid."""
        session = self.session(session_id)
        if session["status"] != "open":
            raise StripeError(400, "This Checkout Session is no longer active.", code="checkout_session_inactive")
        number = cards.digits(form.get("cardNumber", ""))
        errors: dict[str, str] = {}
        email = session["customer_email"] or (self.db["customer"].get(session["customer"] or "", {}).get("email")) or form.get("email", "").strip()
        if not email or "@" not in email:
            errors["email"] = "Your email is incomplete."
        if not number:
            errors["cardNumber"] = "Your card number is incomplete."
        elif not cards.luhn_ok(number):
            errors["cardNumber"] = "Your card number is invalid."
        expiry = form.get("cardExpiry", "").replace(" ", "")
        month, _, year = expiry.partition("/")
        if not (month.isdigit() and year.isdigit() and 1 <= int(month) <= 12 and len(year) in (2, 4)):
            errors["cardExpiry"] = "Your card's expiration date is incomplete."
        else:
            full_year = int(year) + (2000 if len(year) == 2 else 0)
            today = datetime.fromtimestamp(self.now(), tz=timezone.utc)
            if (full_year, int(month)) < (today.year, today.month):
                errors["cardExpiry"] = "Your card's expiration year is in the past." if full_year < today.year else "Your card's expiration date is in the past."
        cvc = form.get("cardCvc", "").strip()
        if not (cvc.isdigit() and len(cvc) in (3, 4)):
            errors["cardCvc"] = "Your card's security code is incomplete."
        if not form.get("billingName", "").strip():
            errors["billingName"] = "Your name is incomplete."
        if errors:
            return errors, None
        decline = cards.outcome(number)
        if decline:
            return {}, decline  # the session stays open, as on Stripe: the customer may try another card
        self._complete(session, email, form["billingName"].strip(), number)
        return {}, None

    def _complete(self, session: Obj, email: str, name: str, number: str) -> None:
        customer = self.db["customer"].get(session["customer"] or "")
        if customer is None:
            customer = self.create_customer({"email": email, "name": name})
        self.saved_cards[customer["id"]] = number
        if session["mode"] == "payment":
            self._complete_payment(session, customer, email, name)
            return
        subscription = self._create_subscription(customer, session["_line_items"], session["_subscription_metadata"])
        invoice = self._invoice(subscription, "subscription_create", paid=True)
        subscription["latest_invoice"] = invoice["id"]
        session.update(
            status="complete", payment_status="paid", customer=customer["id"], subscription=subscription["id"],
            invoice=invoice["id"], url=None,
            customer_details={"email": email, "name": name, "address": None, "phone": None, "tax_exempt": "none", "tax_ids": []},
        )
        # Stripe's order is not guaranteed; this one makes the app meet the subscription before
        # the session that explains it, which real deliveries often do.
        self.emit("customer.subscription.created", subscription)
        self.emit("invoice.paid", invoice)
        self.emit("checkout.session.completed", session)

    def _complete_payment(self, session: Obj, customer: Obj, email: str, name: str) -> None:
        """A one-time payment: a succeeded PaymentIntent, then the session completes (no invoice)."""
        now = self.now()
        intent = {
            "id": self.new_id("pi"), "object": "payment_intent", "amount": session["amount_total"],
            "amount_received": session["amount_total"], "created": now, "currency": session["currency"],
            "customer": customer["id"], "livemode": False, "metadata": dict(session["metadata"]),
            "payment_method_types": ["card"], "status": "succeeded", "latest_charge": self.new_id("ch"),
        }
        self.db["payment_intent"][intent["id"]] = intent
        session.update(
            status="complete", payment_status="paid", customer=customer["id"], payment_intent=intent["id"], url=None,
            customer_details={"email": email, "name": name, "address": None, "phone": None, "tax_exempt": "none", "tax_ids": []},
        )
        self.emit("payment_intent.succeeded", intent)
        self.emit("checkout.session.completed", session)

    # --- subscriptions and invoices -------------------------------------------------------

    def _create_subscription(self, customer: Obj, line_items: list[Obj], metadata: dict[str, str]) -> Obj:
        now = self.now()
        sub_id = self.new_id("sub")
        items = []
        for line in line_items:
            price = self.db["price"][line["price"]]
            items.append({
                "id": self.new_id("si"), "object": "subscription_item", "created": now, "metadata": {},
                "current_period_start": now, "current_period_end": add_interval(now, price["recurring"]["interval"], price["recurring"]["interval_count"]),
                "price": copy.deepcopy(price), "quantity": line["quantity"], "subscription": sub_id,
            })
        subscription = {
            "id": sub_id, "object": "subscription", "billing_cycle_anchor": now, "cancel_at": None,
            "cancel_at_period_end": False, "canceled_at": None, "collection_method": "charge_automatically",
            "created": now, "currency": items[0]["price"]["currency"], "customer": customer["id"], "ended_at": None,
            "items": {"object": "list", "data": items, "has_more": False, "url": f"/v1/subscription_items?subscription={sub_id}"},
            "latest_invoice": None, "livemode": False, "metadata": dict(metadata), "start_date": now, "status": "active",
        }
        self.db["subscription"][sub_id] = subscription
        return subscription

    def _invoice(self, subscription: Obj, reason: str, paid: bool, failure: str | None = None) -> Obj:
        customer = self.db["customer"][subscription["customer"]]
        seq = customer["next_invoice_sequence"]
        customer["next_invoice_sequence"] = seq + 1
        now = self.now()
        invoice_id = self.new_id("in")
        lines, total = [], 0
        for item in subscription["items"]["data"]:
            amount = item["price"]["unit_amount"] * item["quantity"]
            total += amount
            product = self.db["product"].get(item["price"]["product"], {})
            lines.append({
                "id": self.new_id("il"), "object": "line_item", "amount": amount, "currency": item["price"]["currency"],
                "description": f"{item['quantity']} × {product.get('name', 'Subscription')}", "quantity": item["quantity"],
                "period": {"start": item["current_period_start"], "end": item["current_period_end"]},
                "pricing": {"type": "price_details", "price_details": {"price": item["price"]["id"], "product": item["price"]["product"]}},
            })
        first = subscription["items"]["data"][0]
        invoice = {
            "id": invoice_id, "object": "invoice", "amount_due": total, "amount_paid": total if paid else 0,
            "amount_remaining": 0 if paid else total, "attempt_count": 1, "attempted": True, "billing_reason": reason,
            "collection_method": "charge_automatically", "created": now, "currency": subscription["currency"],
            "customer": customer["id"], "customer_email": customer["email"], "customer_name": customer["name"],
            "hosted_invoice_url": f"{self.public_url}/i/{invoice_id}", "last_finalization_error": None,
            "lines": {"object": "list", "data": lines, "has_more": False, "url": f"/v1/invoices/{invoice_id}/lines"},
            "livemode": False, "metadata": {}, "number": f"{customer['invoice_prefix']}-{seq:04d}",
            "parent": {"type": "subscription_details", "quote_details": None, "subscription_details": {"metadata": dict(subscription["metadata"]), "subscription": subscription["id"]}},
            "period_start": first["current_period_start"], "period_end": first["current_period_end"],
            "status": "paid" if paid else "open", "status_transitions": {"finalized_at": now, "paid_at": now if paid else None, "voided_at": None, "marked_uncollectible_at": None},
            "subtotal": total, "total": total, "_failure": failure,
        }
        self.db["invoice"][invoice_id] = invoice
        return invoice

    def subscription(self, sub_id: str) -> Obj:
        return self.get("subscription", sub_id)

    def update_subscription(self, sub_id: str, params: Obj) -> Obj:
        sub = self.subscription(sub_id)
        if sub["status"] in ("canceled", "incomplete_expired"):
            raise StripeError(400, "A canceled subscription can only update its cancellation_details and metadata.", param="subscription")
        previous: Obj = {}
        if "cancel_at_period_end" in params:
            flag = _flag(params["cancel_at_period_end"])
            if flag != sub["cancel_at_period_end"]:
                previous.update(cancel_at_period_end=sub["cancel_at_period_end"], cancel_at=sub["cancel_at"], canceled_at=sub["canceled_at"])
                period_end = sub["items"]["data"][0]["current_period_end"]
                sub.update(cancel_at_period_end=flag, cancel_at=period_end if flag else None, canceled_at=self.now() if flag else None)
        if "metadata" in params:
            previous["metadata"] = dict(sub["metadata"])
            sub["metadata"] = {**sub["metadata"], **_metadata(params)}
        items = params.get("items")
        if items is not None:
            if not isinstance(items, list):
                raise StripeError(400, "Invalid array", param="items")
            previous["items"] = copy.deepcopy(sub["items"])
            for index, change in enumerate(items):
                item = next((i for i in sub["items"]["data"] if i["id"] == change.get("id")), None)
                if item is None:
                    raise missing("subscription_item", str(change.get("id")), f"items[{index}][id]")
                if change.get("price"):
                    price = self.get("price", change["price"], f"items[{index}][price]")
                    if not price["recurring"]:
                        raise StripeError(400, "The price specified is not recurring.", param=f"items[{index}][price]")
                    item["price"] = copy.deepcopy(price)
                if change.get("quantity"):
                    item["quantity"] = int(change["quantity"])
        if previous:
            self.emit("customer.subscription.updated", sub, previous)
        return sub

    def cancel_subscription(self, sub_id: str) -> Obj:
        sub = self.subscription(sub_id)
        if sub["status"] == "canceled":
            raise StripeError(400, f"No such subscription: '{sub_id}'; it has been canceled.", code="resource_missing", param="id")
        now = self.now()
        sub.update(status="canceled", ended_at=now, canceled_at=sub["canceled_at"] or now, cancel_at_period_end=False)
        self.emit("customer.subscription.deleted", sub)
        return sub

    def renew(self, sub_id: str, card: str | None = None) -> Obj:
        """Emulator control: the period ends now; Stripe bills the next one with the saved card.

        A canceled-at-period-end subscription ends instead. `card` overrides the saved card, to
        rehearse a renewal that fails.
        """
        sub = self.subscription(sub_id)
        if sub["status"] == "canceled":
            raise StripeError(400, "This subscription is canceled; it does not renew.", param="subscription")
        if sub["cancel_at_period_end"]:
            return self.cancel_subscription(sub_id)
        number = cards.digits(card) if card else self.saved_cards.get(sub["customer"], "4242424242424242")
        decline = cards.outcome(number)
        previous = {"status": sub["status"], "items": copy.deepcopy(sub["items"])}
        if decline is None:
            for item in sub["items"]["data"]:
                start = item["current_period_end"]
                recurring = item["price"]["recurring"]
                item.update(current_period_start=start, current_period_end=add_interval(start, recurring["interval"], recurring["interval_count"]))
            invoice = self._invoice(sub, "subscription_cycle", paid=True)
            sub.update(status="active", latest_invoice=invoice["id"])
            self.emit("invoice.paid", invoice)
        else:
            invoice = self._invoice(sub, "subscription_cycle", paid=False, failure=decline.message)
            sub.update(status="past_due", latest_invoice=invoice["id"])
            self.emit("invoice.payment_failed", invoice)
        self.emit("customer.subscription.updated", sub, previous)
        return invoice

    def list_invoices(self, params: Obj) -> Obj:
        invoices = list(self.db["invoice"].values())
        if params.get("customer"):
            invoices = [i for i in invoices if i["customer"] == params["customer"]]
        if params.get("subscription"):
            invoices = [i for i in invoices if i["parent"]["subscription_details"]["subscription"] == params["subscription"]]
        return self.listing([public(i) for i in invoices], "/v1/invoices", params.get("limit", 10))

    # --- billing portal -------------------------------------------------------------------

    def create_portal_session(self, params: Obj) -> Obj:
        if not params.get("customer"):
            raise required("customer")
        self.get("customer", params["customer"], "customer")
        portal = {
            "id": self.new_id("bps"), "object": "billing_portal.session", "created": self.now(), "livemode": False,
            "customer": params["customer"], "return_url": params.get("return_url") or None, "configuration": "bpc_emulator",
        }
        portal["url"] = f"{self.public_url}/p/session/{portal['id']}"
        self.db["billing_portal.session"][portal["id"]] = portal
        return portal


def public(obj: Obj) -> Obj:
    """The object as the API shows it (without the emulator's own `_` bookkeeping)."""
    return {key: value for key, value in obj.items() if not key.startswith("_")}
