"""The web page in a real browser: Debian's headless Chromium, driven by Selenium through chromedriver.

A real user logs in on the demo share (coloured shapes the demo model
knows), searches "a red circle", sees the thumbnails load (and more of them
as the page scrolls), opens one, and the photo view shows its name, date
and folder. Screenshots of a phone-sized and a desktop-sized window are
saved to a folder that is kept (printed, or $NASCLIP_SCREENSHOTS) for a
person to look at. A second browser that prefers Chinese gets the Chinese
interface. The browser's console must show no error (a Content-Security-
Policy violation would be one). tools/system_packages.py installs chromium
and chromium-driver; without them this test is skipped, saying so.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from conftest import wait_until
from test_web import admin
from users import accounts, daemon_for_users, needs_root
from webclient import free_port

from tools.scenes import balanced_scenes, jpeg_bytes, render

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [needs_root, pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="needs Debian's chromium and chromium-driver (tools/system_packages.py installs them as root)")]
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the test extra)")

USER, PASSWORD = "nca_wbrowser", "browser-pw-123"
PHONE, DESKTOP = (390, 844), (1366, 900)


@pytest.fixture(scope="module")
def person():
    yield from accounts({}, {USER: []})


@pytest.fixture(scope="module")
def site(person, tmp_path_factory):
    base = Path(tempfile.mkdtemp(prefix="nasclip-web-browser-"))
    base.chmod(0o755)
    share = base / "demo"
    rng = random.Random(2024)
    for i, scene in enumerate(balanced_scenes(96, rng)):  # as `make demo` renders its share
        folder = share / f"album-{i % 4 + 1}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{scene.colour}-{scene.shape}-on-{scene.background}-{i:03d}.jpg"
        path.write_bytes(jpeg_bytes(render(scene, rng), rng))
    for folder, _, names in os.walk(share):
        os.chmod(folder, 0o755)
        for name in names:
            os.chmod(os.path.join(folder, name), 0o644)
    port = free_port()
    process = daemon_for_users(tmp_path_factory.mktemp("browser"), {"demo": share}, base / "run",
                               web={"listen": f"127.0.0.1:{port}", "page_size": 12})
    process.start()
    assert admin(process.config_path, "web", "passwd", USER, stdin=PASSWORD).returncode == 0
    wait_until(lambda: process.status()["photos"]["indexed"] == 96, 120, interval=0.2, what="indexing")
    yield f"http://127.0.0.1:{port}/"
    process.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def shots() -> Path:
    folder = Path(os.environ.get("NASCLIP_SCREENSHOTS") or tempfile.mkdtemp(prefix="nasclip-web-screenshots-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots in {folder}")
    return folder


def browser(language: str, profile: Path):  # type: ignore[no-untyped-def]
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", f"--lang={language}", "--hide-scrollbars"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"intl.accept_languages": language})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))


def until(driver, script: str, timeout: float = 30.0, what: str = "the page"):  # type: ignore[no-untyped-def]
    """Wait until a JavaScript expression is truthy in the page; its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script("return " + script)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {script}")
        time.sleep(0.1)


LOADED_TILES = ("Array.from(document.querySelectorAll('#grid .tile img'))"
                ".filter(i => i.complete && i.naturalWidth > 0).length")


def log_in_and_search(driver, url: str, text: str) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    driver.get(url)
    until(driver, "!document.getElementById('login').hidden", what="the login form")
    driver.find_element(By.ID, "user").send_keys(USER)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
    until(driver, "!document.getElementById('main').hidden", what="the search page")
    box = driver.find_element(By.ID, "q")
    box.send_keys(text)
    driver.find_element(By.ID, "search-button").click()
    until(driver, LOADED_TILES + " >= 12", what="the first page of thumbnails")


def test_log_in_search_a_red_circle_see_thumbnails_and_open_one(site, shots, tmp_path) -> None:
    from selenium.webdriver.common.by import By

    driver = browser("en-US", tmp_path / "profile-en")
    try:
        driver.set_window_size(*PHONE)
        log_in_and_search(driver, site, "a red circle")
        titles = driver.execute_script("return Array.from(document.querySelectorAll('#grid .tile')).map(t => t.title)")
        # The demo model's best: red circles first (the share holds few of them).
        assert titles[0].startswith("red-circle") and sum(t.startswith("red-circle") for t in titles[:4]) >= 2, titles
        assert driver.find_element(By.ID, "search-button").text == "Search"
        time.sleep(0.3)  # let the last thumbnails paint before the picture is taken
        driver.save_screenshot(str(shots / "phone-results.png"))
        driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")  # the grid loads as you scroll
        until(driver, LOADED_TILES + " >= 24", what="the next page after scrolling")
        driver.execute_script("window.scrollTo(0, 0)")
        driver.find_elements(By.CSS_SELECTOR, "#grid .tile")[0].click()
        until(driver, "!document.getElementById('viewer').hidden && document.getElementById('viewer-img').complete"
                      " && document.getElementById('viewer-img').naturalWidth > 0", what="the photo view")
        until(driver, "document.getElementById('viewer-img').src.includes('/api/photo/')", what="the original")
        name = driver.find_element(By.ID, "v-name").text
        assert name.startswith("red-circle") and name.endswith(".jpg"), name
        assert driver.find_element(By.ID, "v-folder").text.endswith(tuple(f"album-{i}" for i in range(1, 5)))
        assert driver.find_element(By.ID, "v-taken").text[:2] == "20"
        time.sleep(0.3)
        driver.save_screenshot(str(shots / "phone-photo.png"))
        driver.set_window_size(*DESKTOP)
        time.sleep(0.5)
        driver.save_screenshot(str(shots / "desktop-photo.png"))
        driver.find_element(By.ID, "v-like").click()  # "more like this": the photo itself comes first
        until(driver, LOADED_TILES + " >= 12", what="more like this")
        first = driver.execute_script("return document.querySelector('#grid .tile').title")
        assert first == name
        driver.find_element(By.ID, "q").send_keys("a red circle")
        driver.find_element(By.ID, "search-button").click()
        until(driver, LOADED_TILES + " >= 12", what="the desktop results")
        time.sleep(0.3)
        driver.save_screenshot(str(shots / "desktop-results.png"))
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"
                  and "/api/me - Failed to load resource: the server responded with a status of 401" not in
                  entry["message"]]  # the page asking whether it is logged in, before the login
        assert errors == [], errors  # no CSP violation, no failed script
    finally:
        driver.quit()
    for shot in ("phone-results", "phone-photo", "desktop-photo", "desktop-results"):
        assert (shots / f"{shot}.png").stat().st_size > 5000


def test_a_browser_preferring_chinese_gets_the_chinese_interface(site, shots, tmp_path) -> None:
    from selenium.webdriver.common.by import By

    driver = browser("zh-CN", tmp_path / "profile-zh")
    try:
        driver.set_window_size(*PHONE)
        log_in_and_search(driver, site, "红色的圆形")
        assert driver.find_element(By.ID, "search-button").text == "搜索"
        assert "张照片" in driver.find_element(By.ID, "message").text
        titles = driver.execute_script("return Array.from(document.querySelectorAll('#grid .tile')).map(t => t.title)")
        assert titles[0].startswith("red-circle") and sum(t.startswith("red-circle") for t in titles[:4]) >= 2, titles
        time.sleep(0.3)
        driver.save_screenshot(str(shots / "phone-results-zh.png"))
    finally:
        driver.quit()
