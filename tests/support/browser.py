"""A headless Chromium (Debian's ``chromium`` + ``chromium-driver``, from ``make sysdeps``)
driven by Selenium, for looking at the Prefect UI the way a person does."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WAIT_S = 45.0


def _binary(path: str, package: str) -> str:
    found = path if Path(path).exists() else shutil.which(Path(path).name)
    if not found:
        raise RuntimeError(f"{path} not found: install Debian's {package} (`make sysdeps`)")
    return found


@contextlib.contextmanager
def headless_chromium(width: int = 1400, height: int = 1000) -> Iterator[WebDriver]:
    """A Chromium without a display; the given driver binary, so Selenium downloads nothing."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _binary(CHROMIUM, "chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--lang=en-US"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(
        service=Service(_binary(CHROMEDRIVER, "chromium-driver")), options=options
    )
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def page_text(driver: WebDriver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def wait_for_text(driver: WebDriver, *texts: str, timeout_s: float = WAIT_S) -> str:
    """The page's text once it shows every one of ``texts`` (the UI renders after load)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, timeout_s, poll_frequency=0.25).until(
            lambda d: all(t in page_text(d) for t in texts)
        )
    except TimeoutException:
        missing = [t for t in texts if t not in page_text(driver)]
        raise AssertionError(
            f"{driver.current_url} never showed {missing}; it shows:\n{page_text(driver)[:2000]}"
        ) from None
    return page_text(driver)


def click_tab(driver: WebDriver, tab_id: str) -> None:
    """Open one of a Prefect UI page's tabs (``li.p-tab#<id>``: artifacts, logs, ...)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    locator = (By.CSS_SELECTOR, f"li.p-tab#{tab_id}")
    WebDriverWait(driver, WAIT_S).until(ec.element_to_be_clickable(locator)).click()
