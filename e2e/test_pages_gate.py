"""The pages a person sees, checked as a gate at desktop (1280 × 800) and phone (390 × 844) size,
light and dark: axe-core finds no serious or critical violation, nothing overflows sideways, no
table column is clipped on a desktop. Activation works from the mailbox's HTML button (a new tab)
and from the plain-text link, and a scanner's GET of the link changes nothing. Journey 1 can be
walked with the keyboard alone, focus always visible. Screenshots: e2e/artifacts/pages/."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect

from e2e.conftest import server_side
from e2e.page_gate import DESKTOP, PHONE, SIZES, gate

PASSWORD = "a-long-journey-passphrase-7"
LINK = re.compile(r"https?://\S+/accounts/confirm-email/[-:\w]+/(?:\?next=\S+)?")


def sign_up_for_pro(page: Page, server_url: str) -> str:
    email = f"gate-{uuid.uuid4().hex[:8]}@example.com"
    page.goto(server_url + "/plans/")
    page.get_by_role("link", name="Sign up for Pro").click()
    expect(page.get_by_role("heading", name="Sign up for Pro")).to_be_visible()
    expect(page.get_by_test_id("chosen-plan")).to_contain_text("You chose Pro")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=False).first.fill(PASSWORD)
    page.get_by_label("Password (again)").fill(PASSWORD)
    page.get_by_role("button", name="Sign up and continue to Pro").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    return email


def open_activation_mail(page: Page, server_url: str, email: str) -> None:
    page.goto(server_url + "/sandbox/mailbox/")
    page.get_by_role("row").filter(has_text=email).get_by_role("link", name="GPUBROKER: Activate your account").click()
    expect(page.get_by_test_id("mail-text")).to_be_visible()


def is_verified(email: str) -> bool:
    from allauth.account.models import EmailAddress

    return server_side(lambda: EmailAddress.objects.get(email=email).verified)


def confirm_and_expect_the_plan(page: Page, server_url: str, email: str) -> None:
    expect(page.get_by_role("heading", name="Activate your account")).to_be_visible()
    assert not is_verified(email)  # opening the link did not activate
    page.get_by_role("button", name="Activate and sign in").click()
    expect(page).to_have_url(server_url + "/plans/?plan=pro")
    expect(page.get_by_test_id("chosen-plan")).to_contain_text("You chose Pro")
    expect(page.get_by_role("button", name="Choose Pro")).to_be_visible()
    expect(page.get_by_test_id("plan-badge")).to_have_text("Free")
    assert is_verified(email)


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_the_html_button_in_the_mailbox_opens_a_tab_that_activates_and_returns_to_the_plan(page: Page, server_url: str, size: str) -> None:
    page.set_viewport_size(SIZES[size])
    email = sign_up_for_pro(page, server_url)
    open_activation_mail(page, server_url, email)
    button = page.frame_locator("iframe[title='HTML part of the email']").get_by_role("link", name="Activate my account")
    with page.context.expect_page() as opened:
        button.click()
    tab = opened.value
    tab.wait_for_load_state()
    assert "/accounts/confirm-email/" in tab.url  # a tab of its own, never inside the mail's frame
    confirm_and_expect_the_plan(tab, server_url, email)


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_the_plain_text_link_activates_and_returns_to_the_plan(page: Page, server_url: str, size: str) -> None:
    page.set_viewport_size(SIZES[size])
    email = sign_up_for_pro(page, server_url)
    open_activation_mail(page, server_url, email)
    page.get_by_test_id("mail-text").get_by_role("link", name=re.compile("confirm-email")).click()
    confirm_and_expect_the_plan(page, server_url, email)


def test_a_scanner_opening_the_link_changes_nothing(page: Page, server_url: str, playwright: Playwright) -> None:
    email = sign_up_for_pro(page, server_url)
    open_activation_mail(page, server_url, email)
    link = LINK.search(page.get_by_test_id("mail-text").inner_text()).group(0)
    scanner = playwright.request.new_context()  # no cookies of the person's browser, as a mail scanner
    for _ in range(3):
        response = scanner.get(link)
        assert response.status == 200 and "Activate and sign in" in response.text()
    scanner.dispose()
    page.goto(link)  # and the person's own GET too: it only shows the button
    assert not is_verified(email)
    page.goto(server_url + "/dashboard/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/dashboard/$"))
    page.goto(link)
    confirm_and_expect_the_plan(page, server_url, email)


def test_the_phone_menu_opens_from_its_button_and_marks_the_current_page(page: Page, server_url: str) -> None:
    page.set_viewport_size(PHONE)
    page.goto(server_url + "/browse/")
    nav = page.get_by_role("navigation", name="Main")
    plans = nav.get_by_role("link", name="Plans")
    expect(plans).to_be_hidden()
    header_height = page.locator(".site-header").bounding_box()["height"]
    assert header_height < 80, header_height  # one compact row
    nav.locator("summary").click()
    expect(plans).to_be_visible()
    expect(nav.get_by_role("link", name="Browse GPUs")).to_have_attribute("aria-current", "page")
    plans.click()
    expect(page.get_by_role("heading", name="Plans", exact=True)).to_be_visible()
    # On a desktop the same list shows as a row, no button.
    page.set_viewport_size(DESKTOP)
    expect(nav.get_by_role("link", name="Plans")).to_be_visible()
    expect(nav.locator("summary")).to_be_hidden()


def test_offer_rows_are_cards_on_a_phone_with_every_figure_in_view(page: Page, server_url: str) -> None:
    page.set_viewport_size(PHONE)
    for path, row in (("/", "#pricing-rows tr"), ("/browse/", "#offer-rows tr")):
        page.goto(server_url + path)
        first = page.locator(row).first
        first.scroll_into_view_if_needed()
        for cell in first.locator("[data-cell]").all():
            box = cell.bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (path, cell.get_attribute("data-cell"), box)
        cells = {c.get_attribute("data-cell") for c in first.locator("[data-cell]").all()}
        assert {"gpu", "price", "provider", "availability"} <= cells and ("score" in cells or path == "/")


def test_a_live_price_change_does_not_move_the_columns(page: Page, server_url: str) -> None:
    from providers.catalog import best_offers
    from providers.live import publish_price_rows
    from providers.models import Offer

    page.set_viewport_size(DESKTOP)
    page.goto(server_url + "/")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    header = page.locator("#pricing thead th")
    before = [round(box["x"]) for box in (h.bounding_box() for h in header.all()) if box]
    lowest = server_side(lambda: best_offers(["H100 80GB"])[0].lowest)

    def reprice(per_gpu: str) -> int:  # still the lowest price of the row
        offer = Offer.objects.get(pk=lowest.offer_id)
        offer.price_per_hour = Decimal(per_gpu) * offer.gpu_count
        offer.save(update_fields=["price_per_hour"])
        return publish_price_rows(["H100 80GB"])

    # The first message may carry no trend (nothing sent before); the second cut shows ▼.
    server_side(reprice, "0.06")
    expect(page.locator("#gpu-row-h100-80gb").get_by_test_id("lowest-price")).to_contain_text("$0.06")
    server_side(reprice, "0.05")
    expect(page.locator("#gpu-row-h100-80gb .trend")).to_have_text("▼")
    after = [round(box["x"]) for box in (h.bounding_box() for h in header.all()) if box]
    assert after == before


def test_the_checkout_page_has_its_icon_and_a_declined_card_says_what_to_do(page: Page, server_url: str, axe_source: str, artifacts: Path) -> None:
    email = sign_up_for_pro(page, server_url)
    open_activation_mail(page, server_url, email)
    page.get_by_test_id("mail-text").get_by_role("link", name=re.compile("confirm-email")).click()
    page.get_by_role("button", name="Activate and sign in").click()
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    page.get_by_role("button", name="Choose Pro").click()
    expect(page.get_by_role("heading", name="Pay with card")).to_be_visible()
    page.get_by_label("Card number").fill("4000 0000 0000 0002")
    page.get_by_label("Expiration date (MM / YY)").fill("12 / 34")
    page.get_by_label("CVC").fill("123")
    page.get_by_label("Cardholder name").fill("Ada Lovelace")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("alert")).to_have_text("Your card was declined.")
    expect(page.get_by_test_id("decline-advice")).to_contain_text("Try another card")
    gate(page, "stripe checkout declined", "desktop", axe_source, artifacts)
    page.get_by_test_id("decline-advice").get_by_role("link", name="back to GPUBROKER").click()
    expect(page.get_by_text("Nothing was charged; you are still on Free.")).to_be_visible()
    expect(page.get_by_text("If your card was declined")).to_be_visible()
    assert missing == [], missing


def visitor_pages() -> list[tuple[str, str]]:
    return [
        ("landing", "/"),
        ("browse", "/browse/"),
        ("plans", "/plans/"),
        ("sign up for pro", "/accounts/signup/?next=/plans/%3Fplan%3Dpro"),
        ("sign in", "/accounts/login/"),
        ("password reset", "/accounts/password/reset/"),
        ("terms", "/terms/"),
        ("privacy", "/privacy/"),
        ("not found", "/no-such-page/"),
    ]


def member_pages() -> list[tuple[str, str]]:
    return [
        ("plans signed in", "/plans/?plan=pro"),
        ("dashboard", "/dashboard/"),
        ("billing", "/billing/"),
        ("settings", "/settings/"),
        ("email settings", "/accounts/email/"),
        ("password change", "/accounts/password/change/"),
        ("browse signed in", "/browse/"),
        ("checkout cancelled", "/billing/checkout-canceled/?attempt=00000000-0000-0000-0000-000000000000"),
    ]


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_every_page_passes_axe_and_fits_the_screen(browser: Browser, server_url: str, axe_source: str, artifacts: Path, size: str) -> None:
    for scheme in ("light", "dark"):
        context = browser.new_context(viewport=SIZES[size], color_scheme=scheme)
        page = context.new_page()
        for name, path in visitor_pages():
            page.goto(server_url + path)
            gate(page, name, size, axe_source, artifacts, scheme)
        email = sign_up_for_pro(page, server_url)
        gate(page, "check your email", size, axe_source, artifacts, scheme)
        page.goto(server_url + "/sandbox/mailbox/")
        gate(page, "sandbox mailbox", size, axe_source, artifacts, scheme)
        open_activation_mail(page, server_url, email)
        gate(page, "activation email", size, axe_source, artifacts, scheme)
        page.get_by_test_id("mail-text").get_by_role("link", name=re.compile("confirm-email")).click()
        gate(page, "activate your account", size, axe_source, artifacts, scheme)
        page.get_by_role("button", name="Activate and sign in").click()
        expect(page).to_have_url(server_url + "/plans/?plan=pro")
        for name, path in member_pages():
            page.goto(server_url + path)
            gate(page, name, size, axe_source, artifacts, scheme)
        page.goto(server_url + "/plans/")
        page.get_by_role("button", name="Choose Pro").click()
        expect(page.get_by_role("heading", name="Pay with card")).to_be_visible()
        gate(page, "stripe checkout", size, axe_source, artifacts, scheme)
        if size == "phone":  # the open phone menu, over the page
            page.goto(server_url + "/dashboard/")
            page.get_by_role("navigation", name="Main").locator("summary").click()
            gate(page, "phone menu open", size, axe_source, artifacts, scheme)
        context.close()


# -- keyboard only ---------------------------------------------------------------------------

_TAG_FOCUSABLES = """() => {
  const selector = 'a[href], button:not([disabled]), input:not([type=hidden]):not([disabled]), select:not([disabled]), textarea:not([disabled]), summary, [tabindex]:not([tabindex="-1"])';
  const found = [...document.querySelectorAll(selector)].filter(el => el.checkVisibility({visibilityProperty: true}) && !el.closest('[inert]'));
  found.forEach((el, i) => el.dataset.kb = String(i));
  return found.map(el => `${el.tagName.toLowerCase()} "${(el.innerText || el.value || el.getAttribute('aria-label') || el.name || '').trim().slice(0, 40)}"`);
}"""

_FOCUSED = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const style = getComputedStyle(el);
  const ring = (style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2) || (style.boxShadow && style.boxShadow !== 'none');
  return {kb: el.dataset.kb ?? null, ring, text: (el.innerText || el.value || el.getAttribute('aria-label') || '').trim().slice(0, 40)};
}"""


def walk(page: Page, where: str) -> None:
    """Tab through the whole page: every visible control is reached, each with a visible focus ring."""
    controls = page.evaluate(_TAG_FOCUSABLES)
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    page.locator("body").focus()
    reached: set[str] = set()
    for _ in range(len(controls) + 20):
        page.keyboard.press("Tab")
        focused = page.evaluate(_FOCUSED)
        if focused is None or focused["kb"] is None:
            continue
        assert focused["ring"], f"{where}: no visible focus on {focused['text']!r}"
        if focused["kb"] in reached:
            break
        reached.add(focused["kb"])
    missed = [label for i, label in enumerate(controls) if str(i) not in reached]
    assert not missed, f"{where}: not reachable with Tab: {missed}"


def press(page: Page, name: str, key: str = "Enter") -> None:
    """Tab until the control named `name` has focus, then press `key` on it."""
    pattern = re.compile(name)
    seen = []
    for _ in range(80):
        page.keyboard.press("Tab")
        focused = page.evaluate(_FOCUSED)
        seen.append(focused and focused["text"])
        if focused and pattern.search(focused["text"]):
            page.keyboard.press(key)
            return
    raise AssertionError(f"no control named {name!r} reached with Tab on {page.url}: {seen}")


def tab_to_field(page: Page, selector: str, text: str) -> None:
    field = page.locator(selector)
    for _ in range(40):
        page.keyboard.press("Tab")
        if field.evaluate("el => el === document.activeElement"):
            page.keyboard.type(text)
            return
    raise AssertionError(f"field {selector!r} not reached with Tab on {page.url}")


def test_journey_1_can_be_done_with_the_keyboard_alone(page: Page, server_url: str, artifacts: Path) -> None:
    page.set_viewport_size(DESKTOP)
    page.goto(server_url + "/")
    walk(page, "landing")
    press(page, "^Plans$")
    expect(page.get_by_role("heading", name="Plans", exact=True)).to_be_visible()
    walk(page, "plans")
    press(page, "^Sign up for Pro$")
    expect(page.get_by_role("heading", name="Sign up for Pro")).to_be_visible()
    walk(page, "sign up")
    email = f"keys-{uuid.uuid4().hex[:8]}@example.com"
    page.locator("body").focus()
    tab_to_field(page, "#id_email", email)
    tab_to_field(page, "#id_password1", PASSWORD)
    tab_to_field(page, "#id_password2", PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    walk(page, "check your email")
    press(page, "^sandbox mailbox$")
    expect(page.get_by_role("heading", name="Sandbox mailbox")).to_be_visible()
    walk(page, "mailbox")
    page.locator("body").focus()
    press(page, "^GPUBROKER: Activate your account$")
    expect(page.get_by_test_id("mail-text")).to_be_visible()
    walk(page, "activation email")
    page.locator("body").focus()
    press(page, "/accounts/confirm-")
    expect(page.get_by_role("heading", name="Activate your account")).to_be_visible()
    walk(page, "activate")
    page.locator("body").focus()
    press(page, "^Activate and sign in$")
    expect(page).to_have_url(server_url + "/plans/?plan=pro")
    walk(page, "plans signed in")
    page.locator("body").focus()
    press(page, "^Choose Pro$")
    expect(page.get_by_role("heading", name="Pay with card")).to_be_visible()
    walk(page, "stripe checkout")
    page.locator("body").focus()
    tab_to_field(page, "#cardNumber", "4242 4242 4242 4242")
    page.keyboard.press("Tab")
    page.keyboard.type("12 / 34")
    page.keyboard.press("Tab")
    page.keyboard.type("123")
    tab_to_field(page, "#billingName", "Ada Lovelace")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Welcome to Pro")).to_be_visible()
    walk(page, "payment received")
    page.locator("body").focus()
    press(page, "^Go to dashboard$")
    expect(page.get_by_test_id("dashboard-plan")).to_have_text("Pro")
    walk(page, "dashboard")
    page.screenshot(path=artifacts / "pages" / "keyboard-journey-dashboard.png", full_page=True)
    assert is_verified(email)
