"""Journey 2: a Pro user tops up, finds an A100, deploys it, activates it from the email, watches
it run and cost, scales it and terminates it, with the final cost in the ledger.

The rentals loop runs as its own process (`manage.py run_pods`, as `manage.py serve` starts it
beside the server when there is Redis), with the sandbox cloud booting 20x faster than real.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from e2e.conftest import ROOT, SERVED_ENV
from e2e.test_billing_journey import choose_pro, pay, shot, sign_up_and_activate

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl journey@laptop"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture(scope="module")
def rentals_loop(server_url: str, artifacts: Path) -> Iterator[None]:
    log = (artifacts / "rentals-loop.log").open("w")
    env = {**os.environ, **SERVED_ENV, "SANDBOX_PROVISION_TIME_SCALE": "0.05", "POD_TICK_SECONDS": "0.5"}
    loop = subprocess.Popen([sys.executable, "manage.py", "run_pods"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield
    finally:
        loop.terminate()
        try:
            loop.wait(timeout=10)
        except subprocess.TimeoutExpired:
            loop.kill()
        log.close()


def both_sizes(page: Page, artifacts: Path, name: str) -> None:
    page.set_viewport_size(DESKTOP)
    shot(page, artifacts, f"deploy-{name}-desktop")
    page.set_viewport_size(PHONE)
    shot(page, artifacts, f"deploy-{name}-phone")
    page.set_viewport_size(DESKTOP)


def cost_of(page: Page) -> float:
    return float(page.get_by_test_id("pod-cost").locator(".stat__value").inner_text().strip("$"))


def test_a_pro_user_tops_up_deploys_activates_scales_and_terminates_a_pod(page: Page, server_url: str, artifacts: Path, rentals_loop: None) -> None:
    page.set_viewport_size(DESKTOP)
    sign_up_and_activate(page, server_url)
    choose_pro(page)
    pay(page, "4242 4242 4242 4242")
    expect(page.get_by_role("heading", name="Welcome to Pro")).to_be_visible()

    # Top up on the emulator's checkout, in payment mode.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Billing").click()
    page.get_by_label("Top-up amount (USD)").fill("50")
    page.get_by_role("button", name="Top up", exact=True).click()
    expect(page.get_by_role("heading", name="Pay with card")).to_be_visible()
    expect(page.get_by_text("One-time payment")).to_be_visible()
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_label("Expiration date (MM / YY)").fill("12 / 34")
    page.get_by_label("CVC").fill("123")
    page.get_by_label("Cardholder name").fill("Ada Lovelace")
    page.get_by_role("button", name="Pay $50.00").click()
    expect(page.get_by_test_id("balance")).to_contain_text("50.00 USD")
    expect(page.get_by_role("table", name="Balance ledger")).to_contain_text("Top-up by card ($50.00)")
    both_sizes(page, artifacts, "01-balance")

    # Browse, filter A100, rank, Deploy.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Browse").click()
    page.get_by_label("GPU", exact=True).select_option("A100 80GB")
    page.get_by_label("Provider", exact=True).select_option("cudo")
    page.get_by_label("Sort by", exact=True).select_option("topsis")
    page.get_by_role("button", name="Apply").click()
    row = page.get_by_role("table", name="GPU offers").get_by_role("row").filter(has=page.locator("[title=\"Provider's id: intel-ice-lake-a100-pci_1x2v4gb\"]"))
    expect(row).to_have_count(1)
    both_sizes(page, artifacts, "02-browse-ranked")
    row.get_by_role("link", name=re.compile("^Deploy")).click()

    # Configure: a bad key first (inline error, answers kept), then a good one.
    expect(page.get_by_role("heading", name=re.compile("Deploy A100 80GB"))).to_be_visible()
    page.get_by_label("Name").fill("journey-pod")
    page.get_by_label("SSH public key").fill("ssh-ed25519 not-a-key")
    page.get_by_role("button", name="Review price").click()
    expect(page.get_by_text("This is not a valid OpenSSH public key")).to_be_visible()
    expect(page.get_by_label("Name")).to_have_value("journey-pod")
    both_sizes(page, artifacts, "03-configure-error")
    page.get_by_label("SSH public key").fill(SSH_KEY)
    page.get_by_role("button", name="Review price").click()

    # Review: the price re-quoted now, with markup, limits and time left.
    expect(page.get_by_role("heading", name="Review: journey-pod")).to_be_visible()
    expect(page.get_by_test_id("requote")).to_contain_text("from the sandbox market")
    expect(page.get_by_test_id("cost-hour")).to_contain_text("10 % platform markup")
    expect(page.get_by_text("of 10 in use (Pro)")).to_be_visible()
    both_sizes(page, artifacts, "04-review")
    page.get_by_role("button", name="Deploy").click()

    # Live progress, then the pod-ready email.
    expect(page.get_by_role("heading", name="journey-pod")).to_be_visible()
    expect(page.get_by_test_id("pod-state")).to_have_text(re.compile("Provisioning|Ready"))
    both_sizes(page, artifacts, "05-provisioning")
    expect(page.get_by_test_id("pod-state")).to_have_text("Ready: waiting for activation", timeout=30_000)
    pod_url = page.url
    page.goto(server_url + "/sandbox/mailbox/")
    mail = page.get_by_role("row").filter(has_text="Your pod journey-pod is ready")
    for _ in range(60):  # the loop sends it after commit; a busy machine delivers it a little later
        if mail.count():
            break
        page.wait_for_timeout(500)
        page.reload()
    expect(mail).to_have_count(1)
    mail.get_by_role("link", name=re.compile("journey-pod is ready")).click()
    expect(page.frame_locator("iframe[title='HTML part of the email']").get_by_role("link", name="Activate and connect")).to_be_visible()
    both_sizes(page, artifacts, "06-pod-ready-email")
    page.get_by_test_id("mail-text").get_by_role("link", name=re.compile("pods.activate")).click()

    # Running, with SSH details and a cost that rises by the second.
    expect(page.get_by_test_id("pod-state")).to_have_text("Running")
    expect(page.get_by_test_id("ssh-command")).to_contain_text("ssh root@sbx-cudo-")
    first = cost_of(page)
    page.wait_for_function("() => parseFloat(document.querySelector('[data-testid=pod-cost] .stat__value').textContent.slice(1)) > %f" % first, timeout=20_000)
    assert cost_of(page) > first
    both_sizes(page, artifacts, "07-running")

    # Scale to 2 GPUs: re-quoted and re-provisioned, running again without a new activation.
    page.get_by_label("New GPU count").select_option("2")
    page.get_by_role("button", name="Scale").click()
    expect(page.get_by_text("Re-quoted and re-provisioning")).to_be_visible()
    expect(page.get_by_test_id("pod-state")).to_have_text("Running", timeout=30_000)
    expect(page.get_by_role("heading", name="journey-pod")).to_be_visible()
    assert page.url == pod_url

    # Terminate: the final cost and its ledger line.
    page.get_by_role("button", name="Terminate").click()
    expect(page.get_by_test_id("pod-state")).to_have_text("Terminated")
    expect(page.get_by_test_id("final-cost")).to_contain_text("Final cost $")
    both_sizes(page, artifacts, "08-terminated")
    page.get_by_role("link", name="ledger").click()
    expect(page.get_by_role("table", name="Balance ledger")).to_contain_text("journey-pod terminated")
    both_sizes(page, artifacts, "09-ledger-receipt")
