"""Headless Chromium for the dashboard tests: Debian's chromium and chromedriver through Selenium.

The driver is given /usr/bin/chromedriver explicitly, so Selenium Manager never downloads one.
Tests skip (with the reason) only when no chromium or chromedriver is installed.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)
MISSING = None if CHROMIUM and CHROMEDRIVER else (
    "no chromium/chromedriver installed: `apt-get install chromium chromium-driver` (.ci/run does it as root)")

needs_chromium = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


def start_chromium(width: int = 1440, height: int = 1000):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--hide-scrollbars", "--force-device-scale-factor=1",
                "--disable-extensions", "--no-first-run", "--lang=en-US"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_script_timeout(30)
    driver.set_page_load_timeout(30)
    return driver


def chromium() -> Iterator[Any]:
    driver = start_chromium()
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(check: Callable[[], Any], *, timeout_s: float, what: str, every_s: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            got = check()
            if got:
                return got
        except Exception as e:  # noqa: BLE001 - the page may be mid-render; retry until the deadline
            last_error = e
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}" + (f" (last error: {last_error})" if last_error else ""))


def console_errors(driver) -> list[str]:
    """Severe browser console entries (script errors, failed loads) since the last call."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def screenshot(driver, path: Path, *, full_page: bool = True) -> None:
    """A PNG of the page; ``full_page``: the whole document, not just the viewport (DevTools)."""
    import base64

    path.parent.mkdir(parents=True, exist_ok=True)
    if not full_page:
        driver.save_screenshot(str(path))
        return
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    width = driver.execute_script("return document.documentElement.clientWidth")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": min(size["height"], 4000), "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))
