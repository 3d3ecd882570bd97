"""A real headless browser for the pages a person opens: Debian's chromium driven by Selenium
through Debian's chromedriver (tests/install-chromium.sh installs both), with a phone's screen.

Selenium's calls block, and the bot's web server runs on the test's own event loop: every call
goes through a thread (`Browser.run`), or the page would wait for a server that cannot answer.
"""

from __future__ import annotations

import asyncio
import base64
import io
import shutil
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

T = TypeVar("T")
PHONE = {"width": 390, "height": 844, "pixelRatio": 3}  # a phone's CSS pixels
INSTALL = "sh tests/install-chromium.sh installs Debian's chromium and chromium-driver"


class Browser:
    def __init__(self, driver: webdriver.Chrome) -> None:
        self.driver = driver

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(call, *args)

    async def open(self, url: str) -> None:
        await self.run(self.driver.get, url)

    async def visible(self, css: str, timeout: float = 10.0) -> WebElement:
        """The element once it is shown (the page's script may reveal it later)."""

        def find(driver: webdriver.Chrome) -> WebElement | bool:
            for element in driver.find_elements(By.CSS_SELECTOR, css):
                if element.is_displayed():
                    return element
            return False

        return await self.run(WebDriverWait(self.driver, timeout, 0.05).until, find)

    async def text_of(self, css: str, contains: str, timeout: float = 10.0) -> str:
        """The text of the element once it contains `contains`."""

        def read(driver: webdriver.Chrome) -> str | bool:
            for element in driver.find_elements(By.CSS_SELECTOR, css):
                if element.is_displayed() and contains in element.text:
                    return str(element.text)
            return False

        return await self.run(WebDriverWait(self.driver, timeout, 0.05).until, read)

    async def script(self, source: str, *args: Any) -> Any:
        return await self.run(self.driver.execute_script, source, *args)

    async def fits_the_screen(self) -> bool:
        """Nothing reaches past the phone's screen (a mobile browser widens its viewport to
        the content, so the elements are measured, not the page)."""
        return bool(
            await self.script(
                "var w = screen.width; return Array.from(document.querySelectorAll('body *'))"
                ".every(function (e) { var r = e.getBoundingClientRect();"
                " return r.width === 0 || (r.left >= 0 && r.right <= w + 0.5); });"
            )
        )

    async def image_bytes(self, css: str) -> bytes:
        """An <img>'s picture as the browser shows it: a PNG of the element."""
        element = await self.visible(css)
        return base64.b64decode(await self.run(lambda: element.screenshot_as_base64))


def qr_text(png: bytes) -> str:
    """What a QR code in a PNG says, read by zxing-cpp."""
    import zxingcpp
    from PIL import Image

    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert found, "no QR code in the image"
    return str(found[0].text)


@pytest.fixture(scope="session")
def chromium() -> Iterator[webdriver.Chrome]:
    binary, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver_path:
        pytest.fail(f"no chromium or chromedriver on this machine: {INSTALL}")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_experimental_option("mobileEmulation", {"deviceMetrics": PHONE})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(chromium: webdriver.Chrome) -> Iterator[Browser]:
    yield Browser(chromium)
    chromium.delete_all_cookies()
    chromium.get("about:blank")
