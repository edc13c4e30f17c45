"""Every page of the built book renders in headless Chromium: no console errors, no broken images.

The book is built from the committed chapters (``jupyter-book build . -W``), served from a local
``http.server`` on 127.0.0.1 and opened with selenium driving Debian's ``chromium`` and
``chromium-driver`` (``apt-get install chromium chromium-driver``). Skips when they are missing.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urljoin

import pytest

from covid_lib.paths import REPO_ROOT

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1280,1024",
)
#: Wait this long for every image on a page to load or fail.
IMAGE_TIMEOUT_MS = 10_000
#: Wait at most this long for a page (or a redirect's target) to finish loading.
PAGE_TIMEOUT_S = 60
#: jupyter-book writes index.html as ``<meta http-equiv="Refresh" content="0; url=...">`` only.
_REFRESH_RE = re.compile(r'<meta\s+http-equiv="refresh"\s+content="\d+;\s*url=([^"]+)"', re.I)


def _missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            return f"{path} not found: apt-get install chromium chromium-driver"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed"
    return None


if _missing():
    pytest.skip(_missing(), allow_module_level=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Build the book into a temporary folder and serve it on 127.0.0.1; yields (base url, html dir).

    With ``BOOK_HTML_DIR`` set, that already built folder (e.g. ``_build/html``) is served instead.
    """
    if os.environ.get("BOOK_HTML_DIR"):
        html = Path(os.environ["BOOK_HTML_DIR"]).resolve()
        assert (html / "index.html").is_file(), f"no index.html in BOOK_HTML_DIR={html}"
    else:
        out = tmp_path_factory.mktemp("browser-book")
        exe = Path(sys.executable).with_name("jupyter-book")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from jupyter_book.cli.main import main; main()"]
        proc = subprocess.run([*cmd, "build", str(REPO_ROOT), "-W", "--path-output", str(out)],
                              capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
        html = out / "_build" / "html"

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            # Browsers ask for /favicon.ico on their own; the book has none, and a 404 there is
            # logged as a console error that says nothing about the pages.
            if self.path == "/favicon.ico":
                self.send_response(204)
                self.end_headers()
                return
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(html)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", html
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    """Headless Chromium through selenium, with /usr/bin/chromedriver (no driver download)."""
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager reach the network
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    drv.set_page_load_timeout(60)
    drv.set_script_timeout(IMAGE_TIMEOUT_MS / 1000 + 5)
    try:
        yield drv
    finally:
        drv.quit()


_IMAGES_JS = """
const done = arguments[arguments.length - 1];
const imgs = Array.from(document.images);
imgs.forEach(img => { img.loading = "eager"; });
const wait = img => img.complete ? Promise.resolve() :
    new Promise(r => { img.addEventListener("load", r); img.addEventListener("error", r); });
const timeout = new Promise(r => setTimeout(r, %d));
Promise.race([Promise.all(imgs.map(wait)), timeout]).then(() => done(
    imgs.map(img => ({src: img.currentSrc || img.src, complete: img.complete, width: img.naturalWidth}))));
""" % IMAGE_TIMEOUT_MS


def _pages(html: Path) -> list[str]:
    return sorted(p.relative_to(html).as_posix() for p in html.rglob("*.html") if "_static" not in p.parts)


def test_every_toc_page_was_built(site):
    _, html = site
    pages = _pages(html)
    for page in ("index.html", "book/intro.html", "book/reproduce.html", "book/references.html"):
        assert page in pages
    assert any(p.startswith("book/chapters/") for p in pages)


def _redirect(html: Path, page: str) -> str | None:
    """The page a redirect-only page (the book's index.html) points to, relative to ``html``."""
    m = _REFRESH_RE.search((html / page).read_text(errors="replace"))
    return None if m is None else urljoin(f"/{page}", m[1]).lstrip("/")


def _open(driver, url: str, via: str | None = None) -> None:
    """Load ``via`` (default ``url``) and wait until the browser is on ``url``, done loading, showing
    the theme's main element: no sleep, and no race with a redirect's second navigation."""
    from selenium.webdriver.support.ui import WebDriverWait

    def loaded(drv) -> bool:
        return (drv.current_url.split("#")[0] == url
                and drv.execute_script("return document.readyState") == "complete"
                and bool(drv.find_elements("css selector", "main#main-content")))

    driver.get(via or url)
    WebDriverWait(driver, PAGE_TIMEOUT_S).until(loaded, f"{url} did not finish loading")


def test_the_index_redirects_to_a_built_page(site, driver):
    base, html = site
    target = _redirect(html, "index.html")
    assert target in _pages(html), f"index.html redirects to {target}, which was not built"
    # The meta refresh starts a second navigation after the first load: wait for that one's end.
    _open(driver, f"{base}/{target}", via=f"{base}/index.html")
    severe = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe


def test_every_page_renders_without_console_errors_or_broken_images(site, driver):
    base, html = site
    problems, images_seen = [], 0
    pages = [page for page in _pages(html) if _redirect(html, page) is None]  # redirects: test above
    for page in pages:
        _open(driver, f"{base}/{page}")
        images = driver.execute_async_script(_IMAGES_JS)
        images_seen += len(images)
        for img in images:
            if not img["complete"] or img["width"] == 0:
                problems.append(f"{page}: image not rendered: {img['src']}")
        for entry in driver.get_log("browser"):
            if entry["level"] == "SEVERE":
                problems.append(f"{page}: console: {entry['message']}")
        assert driver.title, f"{page} has no title"
    assert images_seen > 0, "no images at all: the chapter figures are missing"
    assert not problems, "\n".join(problems)


def test_chapter_page_shows_its_figures(site, driver):
    base, html = site
    chapters = sorted((html / "book" / "chapters").glob("*.html"))
    for chapter in chapters:
        _open(driver, f"{base}/book/chapters/{chapter.name}")
        images = driver.execute_async_script(_IMAGES_JS)
        figures = [i for i in images if "_images/" in i["src"]]
        assert figures and all(i["width"] > 100 for i in figures), chapter.name
        text = driver.find_element("tag name", "main").text
        assert "Table I" in text or "table" in text.lower()
