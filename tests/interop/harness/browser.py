"""Headless Chromium for browser tests: Debian's ``chromium`` driven by Selenium through
Debian's ``chromium-driver`` (no browser or driver downloads, ever).

Owns: finding the system binaries (``unavailable_reason`` for skips), starting chromedriver on a
reserved 127.0.0.1 port with the system chromium and the offline flags of
shared/design/dependencies.md 4.14 plus ``--ignore-certificate-errors`` and a fresh
``--user-data-dir``, screenshots at an emulated viewport size (``screenshot``), collecting the
page's console errors (``console_errors``), and stopping everything by process id
(``driver.quit()``, then SIGKILL of the recorded chromedriver / chromium pids that are left).

Selenium Manager (which may download drivers and browsers) is never run: the driver path is
always given to ``Service`` (Selenium then skips it), ``SE_OFFLINE`` is set for good measure and
``SeleniumManager.binary_paths`` is replaced by a function that raises.

Must not import anything from ``pbx``.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import ports

log = logging.getLogger(__name__)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
HOST = "127.0.0.1"

#: shared/design/dependencies.md 4.14 (offline, headless) + a self-signed certificate accepted.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--ignore-certificate-errors",
)


def unavailable_reason() -> str | None:
    """Why a browser test cannot run here (missing binaries or selenium), or None."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        return f"missing {' and '.join(missing)} (apt-get install -y chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium; it is in the test extras)"
    return None


def _no_selenium_manager(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError("Selenium Manager is disabled in tests: no driver or browser downloads")


def _descendants(pid: int) -> list[int]:
    """Pids of every live descendant of ``pid`` (read from /proc; children first found)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class Browser:
    """One headless Chromium session (a Selenium ``driver``) on a fresh profile directory."""

    def __init__(self, workdir: Path, *, extra_flags: Sequence[str] = ()) -> None:
        self.workdir = Path(workdir)
        self.profile = self.workdir / "chromium-profile"
        self.driver_log = self.workdir / "chromedriver.log"
        self.extra_flags = list(extra_flags)
        self.driver: Any = None
        self._reservation = ports.Reservation(HOST)
        self._pids: list[int] = []

    def start(self, width: int = 1280, height: int = 800) -> Browser:
        """Start chromedriver + chromium; the window is ``width`` x ``height``."""
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common import selenium_manager, utils

        os.environ["SE_OFFLINE"] = "true"
        selenium_manager.SeleniumManager.binary_paths = _no_selenium_manager  # type: ignore[method-assign]

        class LoopbackService(Service):
            """chromedriver reached at 127.0.0.1 (Selenium would resolve "localhost")."""

            @property
            def service_url(self) -> str:
                return f"http://{HOST}:{self.port}"

            def is_connectable(self) -> bool:
                return bool(utils.is_connectable(self.port, HOST))

        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.profile.exists():
            shutil.rmtree(self.profile)
        self.profile.mkdir()
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (*CHROMIUM_FLAGS, *self.extra_flags):
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self.profile}")
        options.add_argument(f"--window-size={width},{height}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = LoopbackService(
            executable_path=CHROMEDRIVER,
            port=self._reservation.port(),
            log_output=str(self.driver_log),
            service_args=["--allowed-ips=127.0.0.1"],
        )
        self.driver = webdriver.Chrome(service=service, options=options)
        self.driver.set_page_load_timeout(15)
        driver_pid = service.process.pid
        self._pids = [driver_pid, *_descendants(driver_pid)]
        log.info("chromium up: chromedriver pid %d, browser pids %s", driver_pid, self._pids[1:])
        return self

    def screenshot(self, path: Path, width: int, height: int, *, mobile: bool = False) -> Path:
        """Save a PNG of the current page rendered in a ``width`` x ``height`` viewport."""
        self.emulate(width, height, mobile=mobile)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not self.driver.save_screenshot(str(path)):
            raise RuntimeError(f"chromium could not write {path}")
        return path

    def emulate(self, width: int, height: int, *, mobile: bool = False) -> None:
        """Make the page's viewport ``width`` x ``height`` CSS pixels (DevTools emulation)."""
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
        )
        time.sleep(0.2)  # one layout pass

    def console_errors(self) -> list[str]:
        """Console messages of level SEVERE since the last call (JS errors, failed loads)."""
        entries = self.driver.get_log("browser")
        return [str(e.get("message")) for e in entries if e.get("level") == "SEVERE"]

    def quit(self) -> None:
        """driver.quit(), then SIGKILL whatever of chromedriver/chromium is still alive."""
        if self.driver is not None:
            try:
                self.driver.quit()
            except Exception:  # noqa: BLE001 - the pid fallback below still runs
                log.warning("driver.quit() failed; killing by pid", exc_info=True)
            self.driver = None
        pids = [*self._pids, *(p for pid in self._pids for p in _descendants(pid))]
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.1)
        for pid in pids:
            if _alive(pid):
                log.warning("chromium pid %d outlived quit(); SIGKILL", pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._pids = []
        self._reservation.release()

    def __enter__(self) -> Browser:
        return self.start() if self.driver is None else self

    def __exit__(self, *exc: object) -> None:
        self.quit()
