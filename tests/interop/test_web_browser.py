"""The admin web UI in a real browser against a real ``pbx serve`` (issue 4, "Tests").

Headless Debian Chromium driven by Selenium through Debian's chromedriver (harness.browser; no
downloads) logs in as the first admin (password from PBX_ADMIN_PASSWORD, so no forced change),
creates two extensions through the Users page form (one with a chosen SIP password, one with a
generated password read back from the provisioning page), and watches the dashboard while SIPp
phones use those credentials: the registration appears through the server-sent events without
a page reload; a call (SIPp UAC -> pbx -> SIPp UAS, held 5 s) appears in active calls as
answered with its codec, its duration counts up live, and it leaves again; then the call
history page shows the answered call with its duration. Along the way: no JavaScript console
errors, no horizontal overflow at 375 px, and screenshots of the dashboard and users pages at
1280x800 and 375x812 (plus call history at 1280x800) saved in tmp_path/screenshots and copied
to $PBX_ARTIFACTS/web_browser when that is set. Traffic only to 127.0.0.1. Imports nothing
from ``pbx``.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import browser as chromium
from .harness.pbx_server import PbxServer
from .harness.sipp import Sipp, write_users_csv

LOCAL = "127.0.0.1"
ADMIN, ADMIN_PASSWORD = "admin", "admin-browser-test-pw"
CALLER, CALLER_PASSWORD = "3001", "pw-3001-browser"
CALLEE = "3002"
HOLD_MS = 5000
SIZES = {"desktop": (1280, 800), "phone": (375, 812)}

SippFactory = Callable[..., Sipp]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[chromium.Browser]:
    reason = chromium.unavailable_reason()
    if reason is not None:
        pytest.skip(f"headless Chromium unavailable: {reason}")
    with chromium.Browser(tmp_path / "browser") as started:
        yield started


@pytest.fixture
def artefacts(tmp_path: Path) -> Iterator[Path]:
    """tmp_path/screenshots; copied to $PBX_ARTIFACTS/web_browser after the test (even failed)."""
    folder = tmp_path / "screenshots"
    folder.mkdir()
    yield folder
    target = os.environ.get("PBX_ARTIFACTS")
    if target:
        shutil.copytree(folder, Path(target) / "web_browser", dirs_exist_ok=True)


def _wait(what: str, probe: Callable[[], Any], timeout: float, every: float = 0.2) -> Any:
    """Poll ``probe`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen within {timeout:g} s")
        time.sleep(every)


def _seconds(text: str) -> int:
    """Seconds of a duration shown as "m:ss" or "h:mm:ss"."""
    total = 0
    for part in text.split(":"):
        total = total * 60 + int(part)
    return total


def _rows(driver: Any, tbody_id: str) -> list[list[str]]:
    """The cell texts of every non-empty row of ``tbody#tbody_id`` (one JS call, no races)."""
    rows: list[list[str]] = driver.execute_script(
        "var b = document.getElementById(arguments[0]); if (!b) { return []; }"
        "return Array.from(b.querySelectorAll('tr:not(.empty)')).map("
        "  function (tr) { return Array.from(tr.cells).map(function (td) {"
        "    return td.textContent.trim(); }); });",
        tbody_id,
    )
    return rows


def _table_rows(driver: Any) -> list[list[str]]:
    """Cell texts of the rows of the page's first table body."""
    rows: list[list[str]] = driver.execute_script(
        "var b = document.querySelector('table tbody'); if (!b) { return []; }"
        "return Array.from(b.querySelectorAll('tr:not(.empty)')).map("
        "  function (tr) { return Array.from(tr.cells).map(function (td) {"
        "    return td.textContent.trim(); }); });"
    )
    return rows


def _shoot(web: chromium.Browser, folder: Path, page: str) -> None:
    """Screenshots of the current page at every size; the phone size must not overflow."""
    for label, (width, height) in SIZES.items():
        web.screenshot(folder / f"{page}-{width}x{height}.png", width, height, mobile=width < 600)
        overflow = web.driver.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth"
        )
        assert overflow <= 0, f"{page} at {label} {width}px scrolls sideways by {overflow}px"
    web.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _log_in(web: chromium.Browser, base: str) -> None:
    from selenium.webdriver.common.by import By

    driver = web.driver
    driver.get(f"{base}/login")
    driver.find_element(By.NAME, "username").send_keys(ADMIN)
    driver.find_element(By.NAME, "password").send_keys(ADMIN_PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    _wait("the dashboard after login", lambda: driver.title.startswith("Dashboard"), 10)
    assert driver.current_url == f"{base}/", "no forced password change for a preset password"


def _create_user(web: chromium.Browser, base: str, extension: str, password: str) -> str:
    """Users page -> New user -> form; returns the SIP password the created page shows."""
    from selenium.webdriver.common.by import By

    driver = web.driver
    driver.get(f"{base}/users")
    driver.find_element(By.LINK_TEXT, "New user").click()
    _wait("the new user form", lambda: driver.find_elements(By.NAME, "extension"), 5)
    driver.find_element(By.NAME, "extension").send_keys(extension)
    driver.find_element(By.NAME, "display_name").send_keys(f"Browser {extension}")
    if password:
        driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    _wait("the provisioning page", lambda: driver.title.startswith("Provisioning"), 10)
    body = driver.find_element(By.TAG_NAME, "main").text
    assert f"Extension {extension} created" in body
    shown: str = driver.find_element(By.CSS_SELECTOR, "code.secret").text
    if password:
        assert shown == password
    assert len(shown) >= 8
    return shown


def _register(
    pbx: PbxServer, sipp_factory: SippFactory, tmp_path: Path, extension: str, password: str
) -> int:
    """REGISTER ``extension`` from a fresh SIPp port; returns that port."""
    users = write_users_csv(tmp_path / f"users-{extension}.csv", [(extension, password)])
    reg = sipp_factory("reg_auth", remote=(LOCAL, pbx.sip_port), inf=[users], calls=1, timeout_s=10)
    result = reg.run()
    assert result.ok, result.log_tail
    return reg.local_port


def test_browser_admin_sees_a_web_created_phone_register_and_call_live(
    pbx_factory: Callable[..., PbxServer],
    sipp_factory: SippFactory,
    browser: chromium.Browser,
    artefacts: Path,
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By

    started = time.monotonic()
    pbx = pbx_factory(md5_only=True, rtp_block=20, env={"PBX_ADMIN_PASSWORD": ADMIN_PASSWORD})
    base = f"https://{LOCAL}:{pbx.http_port}"
    driver = browser.driver

    _log_in(browser, base)
    _create_user(browser, base, CALLER, CALLER_PASSWORD)
    callee_password = _create_user(browser, base, CALLEE, "")
    driver.get(f"{base}/users")
    listed = {row[0]: row for row in _table_rows(driver)}
    assert {CALLER, CALLEE} <= set(listed)
    assert listed[CALLER][1] == f"Browser {CALLER}"
    _shoot(browser, artefacts, "users")
    assert browser.console_errors() == []

    # The dashboard stays open from here on: every change below must arrive without a reload.
    driver.get(f"{base}/")
    live = driver.find_element(By.ID, "live-state")
    _wait("the SSE stream open", lambda: live.get_attribute("data-state") == "live", 5)
    driver.execute_script("window.pbxNoReload = 'same page';")
    assert all(row[0] != CALLER for row in _rows(driver, "registrations"))

    caller_port = _register(pbx, sipp_factory, tmp_path, CALLER, CALLER_PASSWORD)
    row = _wait(
        f"{CALLER} in the dashboard's registrations",
        lambda: [r for r in _rows(driver, "registrations") if r[0] == CALLER],
        8,
    )[0]
    assert row[1] == "sipp-reg_auth"
    assert row[2].startswith(LOCAL) and str(caller_port) in row[2]
    assert driver.find_element(By.ID, "registrations-count").text == "1"

    callee_port = _register(pbx, sipp_factory, tmp_path, CALLEE, callee_password)
    callee = sipp_factory("uas_call", local_port=callee_port, calls=1, timeout_s=30).start()
    caller = sipp_factory(
        "call_uac",
        remote=(LOCAL, pbx.sip_port),
        inf=[tmp_path / f"users-{CALLER}.csv"],
        service=CALLEE,
        calls=1,
        timeout_s=20,
        extra_args=["-d", str(HOLD_MS)],
    ).start()
    call = _wait(
        f"the call {CALLER} -> {CALLEE} in the dashboard's active calls",
        lambda: [c for c in _rows(driver, "calls") if c[:3] == [CALLER, CALLEE, "answered"]],
        HOLD_MS / 1000,
        every=0.1,
    )[0]
    assert "PCMU" in call[4], f"active call row: {call}"
    assert driver.find_element(By.ID, "calls-count").text == "1"
    _wait(
        "the active call's duration counting up to 0:02",
        lambda: [c for c in _rows(driver, "calls") if _seconds(c[3]) >= 2],
        3.5,
    )
    _wait(
        "two registrations on the dashboard",
        lambda: {r[0] for r in _rows(driver, "registrations")} == {CALLER, CALLEE},
        6,
    )
    _shoot(browser, artefacts, "dashboard")
    assert driver.execute_script("return window.pbxNoReload") == "same page"
    assert caller.wait(15).ok, caller.log_tail()
    assert callee.wait(10).ok, callee.log_tail()
    _wait("the active calls list empty again", lambda: not _rows(driver, "calls"), 5)
    assert driver.execute_script("return window.pbxNoReload") == "same page"
    assert browser.console_errors() == []

    def answered_in_history() -> list[list[str]]:
        driver.get(f"{base}/calls")
        return [r for r in _table_rows(driver) if CALLER in r[1] and r[2] == CALLEE]

    record = _wait("the call in call history", answered_in_history, 5, every=0.5)[0]
    assert record[4] == "answered", record
    assert HOLD_MS // 1000 - 1 <= _seconds(record[5]) <= HOLD_MS // 1000 + 2, record
    browser.screenshot(artefacts / "calls-1280x800.png", 1280, 800)
    assert browser.console_errors() == []
    assert time.monotonic() - started < 60
