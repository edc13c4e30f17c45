"""Every page of the built book renders in headless Chromium at 1400x1000: no console errors, every
image loaded, no horizontal overflow of the main column, and no page longer than eight screens
(:data:`HEIGHT_ALLOWANCES`, empty, would list an exception with its measured height).

The book is built from the committed chapters (``jupyter-book build . -W``), served from a local
``http.server`` on 127.0.0.1 and opened with selenium driving Debian's ``chromium`` and
``chromium-driver`` (``apt-get install chromium chromium-driver``). Skips when they are missing.
Each page is opened once (:func:`rendered`); the height of every page, in pixels and in screens, with
its tallest blocks, is written to ``_build/browser/page_heights.json`` and printed (``pytest -s``
shows it). A collapsed toggle (a cell tagged ``hide-output``, ``hide-cell``, ...) counts only its
header in a page's height. With ``BOOK_SCREENSHOTS`` set to a folder, the first screen of each page
of :data:`SCREENSHOT_PAGES` is saved there as PNG (``book/audit/screenshots/`` holds the committed
ones).
"""

from __future__ import annotations

import functools
import http.server
import json
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
    "--disable-dev-shm-usage", "--window-size=1400,1000",
)
#: The window the pages are measured in (issue 19: "no page longer than about 8 screens at 1400x1000").
WINDOW = (1400, 1000)
#: No page may be longer than this many screens of :data:`WINDOW` (document.documentElement.scrollHeight).
MAX_SCREENS = 8
#: The pages allowed to be longer, with their height in px as measured at :data:`WINDOW`. Empty since
#: issue 19 moved the detail of the last six long chapters (01_data 15194 px, 02_segmentation 21521,
#: 10_shortcuts 13597, 05_cross_dataset 9925, 03_confounders 8528, 13_landscape 8019) into named
#: toggles (``hide-output`` / ``hide-cell`` cell tags, MyST dropdowns): every page is checked against
#: :data:`MAX_SCREENS`. A page that grows past it needs its detail moved into toggles, not an entry
#: here; a listed page may grow by :data:`ALLOWANCE_SLACK` over its figure and must leave the list
#: once it fits (the test says so).
HEIGHT_ALLOWANCES: dict[str, int] = {}
#: How much a page of :data:`HEIGHT_ALLOWANCES` may exceed its recorded height (fonts, a changed number).
ALLOWANCE_SLACK = 0.05
#: The pages whose first screen ``BOOK_SCREENSHOTS`` saves, by file name: the verdicts page and three
#: chapters opening on their answer box.
SCREENSHOT_PAGES = {"book/verdicts.html": "verdicts.png", "book/chapters/01_data.html": "01_data.png",
                    "book/chapters/05_cross_dataset.html": "05_cross_dataset.png",
                    "book/chapters/07_small_test.html": "07_small_test.png"}
#: Where the measured heights go.
HEIGHTS_JSON = REPO_ROOT / "_build" / "browser" / "page_heights.json"
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
    # The browser's own frame takes some of the window: grow it until the viewport is WINDOW.
    drv.set_window_size(*WINDOW)
    frame = drv.execute_script(
        "return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight]")
    drv.set_window_size(WINDOW[0] + frame[0], WINDOW[1] + frame[1])
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


#: What a page looks like at :data:`WINDOW`: the viewport, the page's height, and whether the page,
#: or the main column, scrolls sideways (and which of its blocks stick out on the right).
_LAYOUT_JS = """
const main = document.querySelector("main#main-content");
const doc = document.documentElement;
const right = main.getBoundingClientRect().right;
const wide = [];
for (const el of main.querySelectorAll("*")) {
    // code scrolls inside its own box by design; look at what is not code
    if (el.closest("pre, .highlight, mjx-container, .MathJax")) continue;
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > right + 1) {
        wide.push(el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
                  (el.className && typeof el.className === "string" ? "." + el.className.trim().split(/\\s+/).join(".") : "") +
                  " +" + Math.round(r.right - right) + "px");
    }
}
// the tallest blocks of the page's content (a cell, a paragraph, a figure, an admonition), to say
// where a long page's height goes
const blocks = [];
for (const el of main.querySelectorAll("article .cell, article section > p, article section > ul, " +
                                       "article section > ol, article .admonition, article figure")) {
    if (el.parentElement.closest(".cell, .admonition, figure")) continue;
    const text = (el.querySelector(".cell_input pre") || el).textContent.trim().replace(/\\s+/g, " ");
    blocks.push({px: Math.round(el.getBoundingClientRect().height), text: text.slice(0, 70)});
}
blocks.sort((a, b) => b.px - a.px);
return {inner: [window.innerWidth, window.innerHeight], height: doc.scrollHeight,
        page_scrolls: doc.scrollWidth > doc.clientWidth + 1,
        main_scrolls: main.scrollWidth > main.clientWidth + 1,
        wide: wide.slice(0, 5), n_wide: wide.length, tallest: blocks.slice(0, 5)};
"""


@pytest.fixture(scope="module")
def rendered(site, driver) -> dict[str, dict]:
    """Open every built page once (redirect-only pages aside: see the index test) and record its images,
    severe console messages and layout (:data:`_LAYOUT_JS`); write the heights to :data:`HEIGHTS_JSON`."""
    base, html = site
    pages = {}
    shots = os.environ.get("BOOK_SCREENSHOTS")
    for page in (p for p in _pages(html) if _redirect(html, p) is None):
        _open(driver, f"{base}/{page}")
        images = driver.execute_async_script(_IMAGES_JS)
        if shots and page in SCREENSHOT_PAGES:
            Path(shots).mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(Path(shots) / SCREENSHOT_PAGES[page]))
        console = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        pages[page] = {"title": driver.title, "images": images, "console": console,
                       **driver.execute_script(_LAYOUT_JS)}
    screen = pages[next(iter(pages))]["inner"][1]
    heights = {page: {"height_px": m["height"], "screens": round(m["height"] / screen, 2), "tallest": m["tallest"]}
               for page, m in pages.items()}
    HEIGHTS_JSON.parent.mkdir(parents=True, exist_ok=True)
    HEIGHTS_JSON.write_text(json.dumps({"window": list(WINDOW), "viewport": pages[next(iter(pages))]["inner"],
                                        "pages": heights}, indent=1) + "\n")
    return pages


def test_every_page_renders_without_console_errors_or_broken_images(rendered):
    problems, images_seen = [], 0
    for page, m in rendered.items():
        images_seen += len(m["images"])
        for img in m["images"]:
            if not img["complete"] or img["width"] == 0:  # width: naturalWidth, 0 when it did not load
                problems.append(f"{page}: image not rendered: {img['src']}")
        problems += [f"{page}: console: {message}" for message in m["console"]]
        assert m["title"], f"{page} has no title"
    assert images_seen > 0, "no images at all: the chapter figures are missing"
    assert not problems, "\n".join(problems)


def test_the_viewport_is_1400_by_1000(rendered):
    assert all(tuple(m["inner"]) == WINDOW for m in rendered.values())


def test_no_page_scrolls_sideways(rendered):
    """Neither the page nor its main column scrolls horizontally, on every page."""
    problems = [f"{page}: the page scrolls sideways {m['page_scrolls']}, its main column {m['main_scrolls']}"
                for page, m in rendered.items() if m["page_scrolls"] or m["main_scrolls"]]
    assert not problems, "\n".join(problems)


#: Pages whose tables are wider than the main column (they would scroll inside their output box,
#: clipped on the right). Empty since issue 19 made the chapters' tables fit (``report.common.styled``,
#: fewer columns); a page listed here is exempt until its tables fit, and the test below fails when
#: one listed no longer overflows. A table inside a collapsed toggle counts too (it is laid out).
KNOWN_WIDE_TABLES: set[str] = set()


def test_no_block_sticks_out_of_the_main_column(rendered):
    """No block of the main column (code aside, which scrolls in its own box by design) reaches past
    its right edge: a wide table must fit or wrap. The chapters of :data:`KNOWN_WIDE_TABLES` are
    still listed as they are, so the list cannot go stale."""
    problems = [f"{page}: {m['n_wide']} block(s) past the main column's right edge: {', '.join(m['wide'])}"
                for page, m in rendered.items() if m["n_wide"] and page not in KNOWN_WIDE_TABLES]
    fixed = sorted(p for p in KNOWN_WIDE_TABLES if p in rendered and not rendered[p]["n_wide"])
    assert not problems, "\n".join(problems)
    assert not fixed, f"these now fit: remove them from KNOWN_WIDE_TABLES: {fixed}"


def test_no_page_is_longer_than_eight_screens_and_the_heights_are_recorded(rendered):
    """Every page fits in :data:`MAX_SCREENS` screens of :data:`WINDOW`, except the pages of
    :data:`HEIGHT_ALLOWANCES`, which may not grow past their recorded height (plus
    :data:`ALLOWANCE_SLACK`) and must leave the list once they fit."""
    recorded = json.loads(HEIGHTS_JSON.read_text())
    assert set(recorded["pages"]) == set(rendered)
    heights = recorded["pages"]
    limit = MAX_SCREENS * recorded["viewport"][1]
    print(f"\npage heights at {WINDOW[0]}x{WINDOW[1]} (screens of {recorded['viewport'][1]} px; limit {limit} px):")
    for page, h in sorted(heights.items(), key=lambda kv: -kv[1]["screens"]):
        mark = f"  (allowed: {HEIGHT_ALLOWANCES[page]} px)" if page in HEIGHT_ALLOWANCES else ""
        print(f"  {h['screens']:6.1f}  {h['height_px']:6d} px  {page}{mark}")
    for page in ("book/intro.html", "book/verdicts.html", "book/summary.html", "book/reproduce.html"):
        assert page in heights, f"{page} was not built"

    def where(page: str) -> str:
        return "; tallest blocks: " + ", ".join(f"{b['px']} px {b['text']!r}" for b in heights[page]["tallest"][:3])

    long = [f"{p}: {h['height_px']} px{where(p)}" for p, h in heights.items()
            if h["height_px"] > limit and p not in HEIGHT_ALLOWANCES]
    grown = [f"{p}: {heights[p]['height_px']} px, allowed {allowed} px{where(p)}"
             for p, allowed in HEIGHT_ALLOWANCES.items()
             if p in heights and heights[p]["height_px"] > allowed * (1 + ALLOWANCE_SLACK)]
    fits = sorted(p for p in HEIGHT_ALLOWANCES if p in heights and heights[p]["height_px"] <= limit)
    assert not long, f"longer than {MAX_SCREENS} screens ({limit} px): move detail into toggles:\n" + "\n".join(long)
    assert not grown, "longer than their allowance in HEIGHT_ALLOWANCES:\n" + "\n".join(grown)
    assert not fits, f"these now fit in {MAX_SCREENS} screens: remove them from HEIGHT_ALLOWANCES: {fits}"
    assert not [p for p in HEIGHT_ALLOWANCES if p not in heights], "HEIGHT_ALLOWANCES names a page not built"


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


def test_the_audit_page_tables_fit_and_the_raw_frames_would_not(driver, tmp_path):
    """The audit report (:mod:`covid_lib.audit.html`) at the book's viewport: the tables it shows
    (:mod:`covid_lib.audit.tables`: one estimate column, duplicate pairs by file name) stay inside
    the page's text column with long image paths; the raw duplicates frame the page once showed does
    not (the control that shows the check can fail)."""
    import nbformat
    import pandas as pd

    from covid_lib.audit import tables
    from covid_lib.audit.html import notebook_html

    long = "../../hospital_archive/chest_xray_exports/2020-04/frontal/"  # names under styled's LONG_TOKEN
    pairs = pd.DataFrame({"source_a": "hospital_a", "image_id_a": [f"{long}pt_{i:05d}_study1.png" for i in range(4)],
                          "patient_id_a": [f"hospital_a:{i:05d}" for i in range(4)], "split_a": "train", "label_a": 1,
                          "source_b": "hospital_b", "image_id_b": [f"{long}pt_{i:05d}_study2.png" for i in range(4)],
                          "patient_id_b": [f"hospital_b:{i:05d}" for i in range(4)], "split_b": "test", "label_b": 0,
                          "distance": 3, "kind": "near", "across_splits": True, "same_patient": False})
    findings = pd.DataFrame({"section": "3 leakage", "measure": ["images with a duplicate of another label"],
                             "target": "label", "metric": "share", "value": [0.01], "low": [0.004], "high": [0.02],
                             "chance": 0.0, "flag": True, "n_images": 400, "note": "4 pairs (0 exact)"})

    def page_scrolls(*frames) -> bool:
        outputs = [nbformat.v4.new_output("display_data", data={"text/html": f.to_html()}) for f in frames]
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=outputs, metadata={
            "tags": ["hide-input"]})])
        path = tmp_path / f"audit{len(frames)}.html"
        path.write_text(notebook_html(nb))
        driver.get(path.as_uri())
        return driver.execute_script(  # the page scrolls sideways, or a table reaches past the text column
            "const d = document.documentElement, right = document.body.getBoundingClientRect().right;"
            "return d.scrollWidth > d.clientWidth + 1 ||"
            " Array.from(document.querySelectorAll('table')).some(t => t.getBoundingClientRect().right > right + 1);")

    assert not page_scrolls(tables.measures(findings, ["3 leakage"]), tables.duplicate_pairs(pairs))
    assert page_scrolls(pairs)
