"""Open the tour's report in headless Chromium: every image loads and the console shows no errors.

Needs Debian's `chromium` and `chromium-driver`. Under CI (CI=true) `make test` installs them and this test must
run; elsewhere it is skipped with a message saying how to enable it.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import tempfile
import threading

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
IN_CI = os.environ.get("CI", "").lower() == "true"

if not (CHROMIUM and CHROMEDRIVER):
    if IN_CI:
        pytest.fail("CI=true but chromium/chromedriver are missing: `make test` should have installed them "
                    "(apt-get install chromium chromium-driver)", pytrace=False)
    pytest.skip("headless Chromium not found: install it with `sudo apt-get install chromium chromium-driver` "
                "(or run `make browser` as root) to enable the report test", allow_module_level=True)


@pytest.fixture
def served(quick_tour):
    out, _ = quick_tour
    handler = functools.partial(_QuietHandler, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-extensions", "--window-size=1280,2000"):
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='ks-chromium-')}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)


def test_report_images_load_and_console_is_clean(served, quick_tour):
    out, result = quick_tour
    assert result.ok, f"chapters failed: {result.failed}"
    driver = _driver()
    try:
        driver.set_page_load_timeout(60)
        driver.get(served)
        driver.execute_script("return document.readyState")
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
        assert len(images) >= 5, f"expected the figures of the story, found {len(images)} images"
        broken = [src for src, complete, width in images if not complete or width == 0]
        assert not broken, f"images that did not load: {broken}"
        errors = [e for e in driver.get_log("browser") if e.get("level") in ("SEVERE", "ERROR")]
        assert not errors, f"console errors: {errors}"
        assert "kernelscope" in driver.title
        headings = driver.execute_script("return Array.from(document.querySelectorAll('h2')).map(h => h.textContent)")
        assert any("Linear systems" in h for h in headings)
    finally:
        driver.quit()
