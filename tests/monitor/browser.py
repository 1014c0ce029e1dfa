"""Headless Chromium from the system's packages, driven by Selenium: the page as people see it.

No browser is downloaded: Debian's `chromium` and `chromium-driver` are used (`.ci/run`
installs them). Without them the browser tests skip with the reason, except in CI (CI set),
where a missing browser fails them: the CI must not pass without having looked at the page.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from support.environment import unavailable

BROWSERS = ("chromium", "chromium-browser")


@contextmanager
def chromium(width: int = 1200, height: int = 1700) -> Iterator[webdriver.Chrome]:
    """A headless Chromium session; skips (fails in CI) when the system has none."""
    binary = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        unavailable(
            "no chromium or chromedriver on PATH", "apt-get install chromium chromium-driver"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",  # tests run as root in containers
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()
