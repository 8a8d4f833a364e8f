"""Journey 1: a visitor becomes a paying Pro user — plans, sign up, the activation email in the
sandbox mailbox, the link, Stripe's hosted checkout (the emulator) with 4242…, the dashboard.
And the decline path: 4000 0000 0000 0002 shows the failure and leaves the plan at Free."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

from playwright.sync_api import Page, expect

PASSWORD = "a-long-journey-passphrase-7"


def shot(page: Page, artifacts: Path, name: str) -> None:
    page.screenshot(path=artifacts / f"{name}.png", full_page=True)


def sign_up_and_activate(page: Page, server_url: str, artifacts: Path | None = None) -> str:
    """From the landing page to a signed-in dashboard, through the emailed activation link."""
    email = f"journey-{uuid.uuid4().hex[:8]}@example.com"
    page.goto(server_url + "/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Plans").click()
    expect(page.get_by_role("heading", name="Plans", exact=True)).to_be_visible()
    expect(page.get_by_role("table", name="Plan comparison")).to_be_visible()
    if artifacts:
        shot(page, artifacts, "01-plans")
    page.get_by_role("link", name="Sign up for Pro").click()

    expect(page.get_by_role("heading", name="Sign Up")).to_be_visible()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=False).first.fill(PASSWORD)
    page.get_by_label("Password (again)").fill(PASSWORD)
    if artifacts:
        shot(page, artifacts, "02-sign-up")
    page.get_by_role("button", name="Sign Up").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    if artifacts:
        shot(page, artifacts, "03-check-your-email")

    page.get_by_role("link", name="sandbox mailbox").click()
    expect(page.get_by_role("heading", name="Sandbox mailbox")).to_be_visible()
    row = page.get_by_role("row").filter(has_text=email)
    expect(row).to_have_count(1)
    if artifacts:
        shot(page, artifacts, "04-sandbox-mailbox")
    row.get_by_role("link", name="GPUBROKER: Activate your account").click()
    expect(page.frame_locator("iframe[title='HTML part of the email']").get_by_role("link", name="Activate my account")).to_be_visible()
    if artifacts:
        shot(page, artifacts, "05-activation-email")
    page.get_by_test_id("mail-text").get_by_role("link", name=re.compile("confirm-email")).click()
    # The link only shows a page (a scanner's GET changes nothing); its button activates.
    page.get_by_role("button", name="Activate and sign in").click()

    # Signed in, and back where "Sign up for Pro" started: the plans, now with checkout buttons.
    expect(page).to_have_url(server_url + "/plans/?plan=pro")
    expect(page.get_by_role("button", name="Choose Pro")).to_be_visible()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard").click()
    expect(page.get_by_role("heading", name=f"Welcome, {email}")).to_be_visible()
    expect(page.get_by_test_id("plan-badge")).to_have_text("Free")
    return email


def choose_pro(page: Page) -> None:
    page.get_by_role("link", name="Upgrade").first.click()
    page.get_by_role("button", name="Choose Pro").click()
    expect(page.get_by_role("heading", name="Pay with card")).to_be_visible()
    expect(page.get_by_text("$49.00").first).to_be_visible()


def pay(page: Page, card: str) -> None:
    page.get_by_label("Card number").fill(card)
    page.get_by_label("Expiration date (MM / YY)").fill("12 / 34")
    page.get_by_label("CVC").fill("123")
    page.get_by_label("Cardholder name").fill("Ada Lovelace")
    page.get_by_role("button", name="Subscribe").click()


def test_a_visitor_signs_up_activates_and_pays_for_pro(page: Page, server_url: str, artifacts: Path) -> None:
    sign_up_and_activate(page, server_url, artifacts)
    shot(page, artifacts, "06-dashboard-free")
    choose_pro(page)
    shot(page, artifacts, "07-stripe-checkout")
    pay(page, "4242 4242 4242 4242")

    expect(page.get_by_role("heading", name="Welcome to Pro")).to_be_visible()
    expect(page.get_by_text("Payment received")).to_be_visible()
    shot(page, artifacts, "08-payment-received")

    page.get_by_role("link", name="Go to dashboard").click()
    expect(page.get_by_test_id("dashboard-plan")).to_have_text("Pro")
    expect(page.get_by_test_id("plan-badge")).to_have_text("Pro")
    expect(page.get_by_test_id("limit-rate")).to_contain_text("100 req/s")
    expect(page.get_by_test_id("limit-pods")).to_contain_text("10")
    shot(page, artifacts, "09-dashboard-pro")

    # The invoice arrives by webhook from the emulator, signed as Stripe signs it.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Billing").click()
    invoices = page.get_by_role("table", name="Invoices and payments")
    deadline = time.monotonic() + 60  # the webhook's delivery, waited for with a bound, however busy the machine
    while not invoices.get_by_text("Paid").count() and time.monotonic() < deadline:
        page.wait_for_timeout(250)
        page.reload()
    expect(invoices.get_by_role("row").filter(has_text="$49.00")).to_contain_text("Paid")
    expect(page.get_by_test_id("payment-status")).to_have_text("Paid")
    shot(page, artifacts, "10-billing-pro")


def test_a_declined_card_shows_the_failure_and_leaves_the_plan_unchanged(page: Page, server_url: str, artifacts: Path) -> None:
    sign_up_and_activate(page, server_url)
    choose_pro(page)
    pay(page, "4000 0000 0000 0002")
    expect(page.get_by_role("alert")).to_have_text("Your card was declined.")
    shot(page, artifacts, "11-stripe-checkout-declined")

    page.get_by_role("link", name="← Back to GPUBROKER").click()
    expect(page.get_by_role("heading", name="Checkout cancelled")).to_be_visible()
    expect(page.get_by_text("Nothing was charged; you are still on Free.")).to_be_visible()
    shot(page, artifacts, "12-checkout-cancelled")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard").click()
    expect(page.get_by_test_id("dashboard-plan")).to_have_text("Free")
    expect(page.get_by_test_id("plan-badge")).to_have_text("Free")


def test_the_signed_in_pages_work_on_a_phone(page: Page, server_url: str, artifacts: Path) -> None:
    sign_up_and_activate(page, server_url)
    page.set_viewport_size({"width": 390, "height": 844})
    for path, name in (("/dashboard/", "13-phone-dashboard"), ("/billing/", "14-phone-billing"), ("/plans/", "15-phone-plans"), ("/settings/", "16-phone-settings")):
        page.goto(server_url + path)
        shot(page, artifacts, name)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path


def test_a_member_creates_an_api_key_that_is_shown_once(page: Page, server_url: str, artifacts: Path) -> None:
    sign_up_and_activate(page, server_url)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    page.get_by_label("Name").fill("CI pipeline")
    page.get_by_role("button", name="Create key").click()
    key = page.get_by_test_id("new-api-key")
    expect(key).to_have_text(re.compile(r"^gpb_[0-9a-f]{8}_\S{20,}$"))
    raw = key.inner_text()
    shot(page, artifacts, "17-api-key-created")
    response = page.request.get(server_url + "/api/v2/account", headers={"X-API-Key": raw})
    assert response.status == 200 and response.json()["plan"]["slug"] == "free"
    page.goto(server_url + "/settings/")
    expect(page.get_by_text(raw)).to_have_count(0)
    expect(page.get_by_role("table", name="Your API keys")).to_contain_text("CI pipeline")
