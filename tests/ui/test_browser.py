"""The dashboard in a real headless browser: Debian's Chromium driven by Playwright.

Screenshots of each page go to ``test-artifacts/ui/``; with ``EDGESHIP_UPDATE_SCREENSHOTS=1``
they also replace the README's ``docs/screenshots/``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ui.conftest import Lab, event

CHROMIUM = Path("/usr/bin/chromium")
# No network but loopback, nothing fetched in the background, no sandbox (CI runs as root).
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "ui"
README_SHOTS = REPO / "docs" / "screenshots"
WAIT_MS = 15_000  # a few poll intervals of the live regions


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}, but CI=true: the browser tests must run in CI")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install playwright; never `playwright install`)")
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("EDGESHIP_UPDATE_SCREENSHOTS") == "1":
        README_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, README_SHOTS / path.name)


def test_log_in_browse_and_pause_and_resume_a_rollout(lab: Lab, chromium: Any) -> None:
    context = chromium.new_context(viewport={"width": 1100, "height": 760}, base_url=lab.fleet.url)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)

    page.goto("/ui/rollouts")
    assert "/ui/login" in page.url
    shot(page, "login")
    page.fill("#token", lab.fleet.admin_token)
    page.click("button:has-text('Log in')")
    page.wait_for_url("**/ui/rollouts")

    page.goto("/ui/fleet")
    for i in range(1, 7):
        assert page.locator(f"text=cam-{i:02d}").count() == 1
    # A device's state changes: the live region shows it without reloading the page.
    page.evaluate("window.notReloaded = true")
    lab.checkin(lab.devices[5], "downloading", "1.0.0")
    row = page.locator("tr", has=page.locator("a:has-text('cam-06')"))
    row.locator("text=downloading").wait_for()
    assert page.evaluate("window.notReloaded") is True
    shot(page, "fleet")

    page.click("a:has-text('cam-01')")
    page.wait_for_url(f"**/ui/devices/{lab.devices[0].id}")
    assert "answers are quick" in page.inner_text("main")
    shot(page, "device")

    page.click("nav >> text=Releases")
    assert "app@1.1.0" in page.inner_text("main") and page.locator("table.deltas").count() >= 1
    shot(page, "releases")

    page.click("nav >> text=Rollouts")
    card = page.locator(f"section#{lab.rollout_id}")
    assert card.get_attribute("data-status") == "rolling"
    card.locator("button:has-text('Pause')").click()
    page.locator(f"section#{lab.rollout_id}[data-status='paused']").wait_for()
    assert lab.rollout()["status"] == "paused"
    card.locator("button:has-text('Resume')").click()
    page.locator(f"section#{lab.rollout_id}[data-status='rolling']").wait_for()
    assert lab.rollout()["status"] == "rolling"

    # The pilots install the new release; the page follows on its own.
    told = [(lab.checkin(d, "committed", "1.0.0") or {}).get("rollout_id") for d in lab.devices]
    assert told[:4] == [lab.rollout_id, lab.rollout_id, None, None]
    for d in lab.devices[:2]:
        lab.checkin(d, "committed", "1.1.0")
        lab.send(d, event("state", state="committed", release="app@1.1.0"))
    # The rollout job folds events every few seconds; then the pilot bakes, counting down.
    card.locator("tr:has-text('pilot') >> text=2/2").wait_for(timeout=30_000)
    card.locator("[data-countdown]").wait_for()
    shot(page, "rollouts")

    page.click("nav >> text=Experiments")
    assert "too early to tell" in page.inner_text("main")
    shot(page, "experiments")

    # A phone: one column, tables as label/value rows, nothing wider than the screen.
    phone = chromium.new_context(viewport={"width": 390, "height": 844}, base_url=lab.fleet.url, storage_state=context.storage_state())
    small = phone.new_page()
    small.goto("/ui/rollouts")
    assert small.evaluate("document.documentElement.scrollWidth") <= 390
    shot(small, "rollouts-phone")
    phone.close()
    context.close()
