"""HTTP face of the emulator: Stripe's `/v1` API, the hosted pages, and a few sandbox controls."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from django.template import Context, Engine

from billing.emulator import params as stripe_params
from billing.emulator.state import Emulator, Obj, StripeError, public
from billing.emulator.webhooks import WebhookSender

log = logging.getLogger("gpubroker.billing.emulator")
TEMPLATES = Engine(dirs=[str(Path(__file__).parent / "templates")], autoescape=True, libraries={"humanize": "django.contrib.humanize.templatetags.humanize"})
MAX_BODY_BYTES = 256 * 1024


class Response:
    def __init__(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.status, self.body, self.content_type, self.headers = status, body, content_type, headers or {}


def json_response(status: int, obj: Obj, headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(obj, indent=2).encode(), "application/json", headers)


def page(template: str, context: dict[str, Any], status: int = 200) -> Response:
    html = TEMPLATES.get_template(template).render(Context(context))
    return Response(status, html.encode(), "text/html; charset=utf-8")


def redirect(location: str) -> Response:
    return Response(303, b"", "text/plain", {"Location": location})


def money(cents: int, currency: str) -> str:
    symbol = "$" if currency == "usd" else currency.upper() + " "
    return f"{symbol}{cents // 100:,}.{cents % 100:02d}"


def day(ts: int | None) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%-d %b %Y") if ts else ""


class Api:
    """One method per route; each gets (emulator, params, *url groups) and returns a Response."""

    def __init__(self, emulator: Emulator) -> None:
        self.em = emulator

    # /v1 ----------------------------------------------------------------------------------
    def create_customer(self, params: Obj) -> Obj:
        return self.em.create_customer(params)

    def get_customer(self, params: Obj, cid: str) -> Obj:
        return self.em.expand(self.em.get("customer", cid), params.get("expand", []))

    def create_product(self, params: Obj) -> Obj:
        return self.em.create_product(params)

    def get_product(self, params: Obj, pid: str) -> Obj:
        return self.em.get("product", pid)

    def create_price(self, params: Obj) -> Obj:
        return self.em.create_price(params)

    def list_prices(self, params: Obj) -> Obj:
        return self.em.list_prices(params)

    def get_price(self, params: Obj, pid: str) -> Obj:
        return self.em.expand(self.em.get("price", pid), params.get("expand", []))

    def create_session(self, params: Obj) -> Obj:
        return public(self.em.create_session(params))

    def get_session(self, params: Obj, sid: str) -> Obj:
        return self.em.expand(public(self.em.session(sid)), params.get("expand", []))

    def expire_session(self, params: Obj, sid: str) -> Obj:
        return public(self.em.expire_session(sid))

    def get_subscription(self, params: Obj, sid: str) -> Obj:
        return self.em.expand(self.em.subscription(sid), params.get("expand", []))

    def update_subscription(self, params: Obj, sid: str) -> Obj:
        return self.em.expand(self.em.update_subscription(sid, params), params.get("expand", []))

    def cancel_subscription(self, params: Obj, sid: str) -> Obj:
        return self.em.cancel_subscription(sid)

    def list_invoices(self, params: Obj) -> Obj:
        return self.em.list_invoices(params)

    def get_invoice(self, params: Obj, iid: str) -> Obj:
        return self.em.expand(public(self.em.get("invoice", iid)), params.get("expand", []))

    def create_portal_session(self, params: Obj) -> Obj:
        return self.em.create_portal_session(params)

    # controls -----------------------------------------------------------------------------
    def renew(self, params: Obj, sid: str) -> Obj:
        return public(self.em.renew(sid, params.get("card") or None))


API_ROUTES: list[tuple[str, str, str]] = [
    ("POST", r"/v1/customers", "create_customer"),
    ("GET", r"/v1/customers/(?P<cid>[\w]+)", "get_customer"),
    ("POST", r"/v1/products", "create_product"),
    ("GET", r"/v1/products/(?P<pid>[\w]+)", "get_product"),
    ("POST", r"/v1/prices", "create_price"),
    ("GET", r"/v1/prices", "list_prices"),
    ("GET", r"/v1/prices/(?P<pid>[\w]+)", "get_price"),
    ("POST", r"/v1/checkout/sessions", "create_session"),
    ("GET", r"/v1/checkout/sessions/(?P<sid>[\w]+)", "get_session"),
    ("POST", r"/v1/checkout/sessions/(?P<sid>[\w]+)/expire", "expire_session"),
    ("GET", r"/v1/subscriptions/(?P<sid>[\w]+)", "get_subscription"),
    ("POST", r"/v1/subscriptions/(?P<sid>[\w]+)", "update_subscription"),
    ("DELETE", r"/v1/subscriptions/(?P<sid>[\w]+)", "cancel_subscription"),
    ("GET", r"/v1/invoices", "list_invoices"),
    ("GET", r"/v1/invoices/(?P<iid>[\w]+)", "get_invoice"),
    ("POST", r"/v1/billing_portal/sessions", "create_portal_session"),
    ("POST", r"/_emulator/subscriptions/(?P<sid>[\w]+)/renew", "renew"),
]


class Pages:
    """The hosted checkout page, the invoice page and the customer portal."""

    def __init__(self, emulator: Emulator) -> None:
        self.em = emulator

    def _summary(self, session: Obj) -> dict[str, Any]:
        lines = []
        for line in session["_line_items"]:
            price = self.em.db["price"][line["price"]]
            product = self.em.db["product"].get(price["product"], {})
            interval = price["recurring"]["interval"] if price["recurring"] else None  # None: a one-time payment
            lines.append({"name": product.get("name", "Subscription"), "quantity": line["quantity"], "amount": money(price["unit_amount"] * line["quantity"], price["currency"]), "interval": interval})
        return {"lines": lines, "total": money(session["amount_total"], session["currency"]), "interval": lines[0]["interval"] if lines else None}

    def checkout(self, method: str, form: dict[str, str], sid: str) -> Response:
        try:
            session = self.em.session(sid)
        except StripeError:
            return page("emulator/message.html", {"title": "Checkout not found", "message": "This checkout link is not valid."}, 404)
        if session["status"] != "open":
            words = "This payment is complete." if session["status"] == "complete" else "This checkout session has expired."
            return page("emulator/message.html", {"title": "Checkout closed", "message": words, "back": session["success_url"].replace("{CHECKOUT_SESSION_ID}", sid) if session["status"] == "complete" else session["cancel_url"]}, 410)
        customer = self.em.db["customer"].get(session["customer"] or "", {})
        preset_email = session["customer_email"] or customer.get("email")
        context: dict[str, Any] = {"session": session, "preset_email": preset_email, "form": form, "errors": {}, "decline": None, **self._summary(session)}
        if method == "GET":
            return page("emulator/checkout.html", context)
        errors, decline = self.em.pay_session(sid, form)
        if not errors and not decline:
            return redirect(session["success_url"].replace("{CHECKOUT_SESSION_ID}", sid))
        context.update(errors=errors, decline=decline)
        return page("emulator/checkout.html", context, 402 if decline else 400)

    def invoice(self, method: str, form: dict[str, str], iid: str) -> Response:
        invoice = self.em.db["invoice"].get(iid)
        if invoice is None:
            return page("emulator/message.html", {"title": "Invoice not found", "message": "This invoice link is not valid."}, 404)
        lines = [{"description": line["description"], "amount": money(line["amount"], line["currency"]), "period": f"{day(line['period']['start'])} – {day(line['period']['end'])}"} for line in invoice["lines"]["data"]]
        return page("emulator/invoice.html", {"invoice": invoice, "lines": lines, "total": money(invoice["total"], invoice["currency"]), "created": day(invoice["created"]), "failure": invoice.get("_failure")})

    def portal(self, method: str, form: dict[str, str], pid: str) -> Response:
        portal = self.em.db["billing_portal.session"].get(pid)
        if portal is None:
            return page("emulator/message.html", {"title": "Portal session not found", "message": "This portal link is not valid."}, 404)
        subs = [s for s in self.em.db["subscription"].values() if s["customer"] == portal["customer"] and s["status"] != "canceled"]
        if method == "POST":
            sub = next((s for s in subs if s["id"] == form.get("subscription")), None)
            if sub is None or form.get("action") not in ("cancel", "renew"):
                return page("emulator/message.html", {"title": "Not possible", "message": "That subscription cannot be changed here."}, 400)
            self.em.update_subscription(sub["id"], {"cancel_at_period_end": "true" if form["action"] == "cancel" else "false"})
            return redirect(portal["url"])
        rows = []
        for sub in subs:
            item = sub["items"]["data"][0]
            product = self.em.db["product"].get(item["price"]["product"], {})
            rows.append({"id": sub["id"], "name": product.get("name", "Subscription"), "amount": money(item["price"]["unit_amount"], item["price"]["currency"]), "interval": item["price"]["recurring"]["interval"], "status": sub["status"], "cancel_at_period_end": sub["cancel_at_period_end"], "period_end": day(item["current_period_end"])})
        invoices = sorted((i for i in self.em.db["invoice"].values() if i["customer"] == portal["customer"]), key=lambda i: i["created"], reverse=True)
        invoice_rows = [{"number": i["number"], "url": i["hosted_invoice_url"], "status": i["status"], "amount": money(i["total"], i["currency"]), "created": day(i["created"])} for i in invoices]
        customer = self.em.db["customer"][portal["customer"]]
        return page("emulator/portal.html", {"portal": portal, "subscriptions": rows, "invoices": invoice_rows, "customer": customer})


PAGE_ROUTES: list[tuple[str, str]] = [
    (r"/c/pay/(?P<sid>cs_test_\w+)", "checkout"),
    (r"/i/(?P<iid>in_\w+)", "invoice"),
    (r"/p/session/(?P<pid>bps_\w+)", "portal"),
]


class Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "stripe-emulator"
    disable_nagle_algorithm = True  # headers and body leave in separate writes

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _dispatch(self, method: str) -> None:
        try:
            response = self._respond(method)
        except StripeError as exc:  # a request we refuse before routing it (its body)
            response = json_response(exc.status, exc.body())
        except Exception:  # the emulator must answer like Stripe, never drop the connection
            log.exception("emulator error on %s %s", method, self.path)
            response = json_response(500, {"error": {"type": "api_error", "message": "An unexpected error occurred in the Stripe emulator."}})
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Request-Id", f"req_{hashlib.sha1(str(id(self)).encode()).hexdigest()[:14]}")
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)

    def _body(self) -> str:
        raw = (self.headers.get("Content-Length") or "0").strip()
        # Digits only: int() would take "-1" (read(-1) waits for the client to close) or "+5".
        if not raw.isdigit():
            self.close_connection = True  # the body's end is unknown: this connection cannot be reused
            raise StripeError(400, f"Invalid Content-Length header: {raw[:20]!r}.")
        length = int(raw)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise StripeError(413, "Request body too large.")
        return self.rfile.read(length).decode("utf-8") if length else ""

    def _respond(self, method: str) -> Response:
        url = urlsplit(self.path)
        em = self.server.emulator
        if url.path == "/_emulator/health":
            return json_response(200, {"ok": True})
        for pattern, name in PAGE_ROUTES:
            match = re.fullmatch(pattern, url.path)
            if match and method in ("GET", "POST"):
                form = dict(parse_qsl(self._body(), keep_blank_values=True)) if method == "POST" else {}
                with em.lock:
                    response = getattr(Pages(em), name)(method, form, *match.groups())
                em.commit()
                return response
        for route_method, pattern, name in API_ROUTES:
            match = re.fullmatch(pattern, url.path)
            if match and route_method == method:
                return self._api(method, url.path, url.query, name, match.groups())
        return json_response(404, StripeError(404, f"Unrecognized request URL ({method}: {url.path}).").body())

    def _api(self, method: str, path: str, query: str, name: str, groups: tuple[str, ...]) -> Response:
        em = self.server.emulator
        auth = self.headers.get("Authorization", "")
        key = auth.removeprefix("Bearer ").strip()
        if not key:
            return json_response(401, StripeError(401, "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth.").body())
        if not key.startswith(("sk_test_", "rk_test_")):
            return json_response(401, StripeError(401, f"Invalid API Key provided: {key[:8]}{'*' * 4}. The emulator takes test-mode keys only.").body())
        try:
            body = self._body()
            params = stripe_params.decode(query if method != "POST" else body or query)
        except StripeError as exc:
            return json_response(exc.status, exc.body())
        idem_key = self.headers.get("Idempotency-Key") if method == "POST" else None
        fingerprint = hashlib.sha256(f"{method} {path} {json.dumps(params, sort_keys=True)}".encode()).hexdigest()
        with em.lock:
            replay = em.idempotency.get(idem_key) if idem_key else None
            if replay:
                seen, status, saved = replay
                if seen != fingerprint:
                    error = StripeError(400, f"Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{idem_key}' if you meant to execute a different request.", type="idempotency_error")
                    return json_response(400, error.body())
                return json_response(status, saved, {"Idempotent-Replayed": "true", "Idempotency-Key": idem_key})
            try:
                status, result = 200, getattr(Api(em), name)(params, *groups)
            except StripeError as exc:
                status, result = exc.status, exc.body()
            if idem_key:
                em.idempotency.put(idem_key, fingerprint, status, result)
        if method != "GET":
            em.commit()
        return json_response(status, result, {"Idempotency-Key": idem_key} if idem_key else None)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    emulator: Emulator


class EmulatorServer:
    """The emulator on a host and port. `webhook_url=None` keeps signed events in `outbox()`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 12111, *, webhook_secret: str, webhook_url: str | None = None, state_file: Path | None = None, public_url: str | None = None) -> None:
        self.httpd = _Server((host, port), Handler)
        self.port = self.httpd.server_address[1]
        self.url = public_url or f"http://{host}:{self.port}"
        self.webhooks = WebhookSender(webhook_secret, webhook_url)
        self.emulator = Emulator(self.url, self.webhooks, state_file=state_file)
        self.httpd.emulator = self.emulator
        self._thread: threading.Thread | None = None

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.2)

    def start(self) -> EmulatorServer:
        self._thread = threading.Thread(target=self.serve_forever, name="stripe-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.webhooks.close()

    def outbox(self) -> list[tuple[str, str]]:
        """Signed deliveries not yet taken: (raw JSON body, Stripe-Signature header)."""
        return self.webhooks.take()
