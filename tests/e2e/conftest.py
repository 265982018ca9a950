"""Real-browser fixtures: one ``streamlit run app.py`` server for the whole test session, headless Chromium.

    def test_something(browser, server, run):
        async def scenario():
            async with new_session(browser) as page:
                await open_app(page, server)                    # the default page, rendered
                assert (await metric_values(page))["Balancedness after (vLLM)"]
        run(scenario())

Playwright's async API runs on one event loop (``run``), so one test can drive several
sessions at once (``asyncio.gather``). Chromium is Debian's (``/usr/bin/chromium``,
or $EPLB_CHROMIUM), started headless with ``--no-sandbox --disable-gpu
--disable-background-networking`` and a fresh temporary profile; every session is a
new browser context (own cookies, storage and websocket). Without Chromium the
tests skip, unless EPLB_E2E=1 (set by .ci/run): then they fail.

``app_pages()`` reads app.PAGES from app.py's source, so a page added there is visited too.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app.py"
OUTPUT = ROOT / "test-output" / "e2e"
"""Screenshots, the server's log and the recorded figures (git-ignored)."""

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT = {"width": 1400, "height": 1000}
RENDER_MS = 60_000
"""Longest wait for one render or rerun, in ms: a cold torch import on a loaded 2-core machine fits well inside."""
SERVER_START_S = 90

# Streamlit's DOM, by data-testid
EXCEPTION = '[data-testid="stException"]'
METRIC = '[data-testid="stMetric"]'
PLOT = ".js-plotly-plot"
NAV_LINK = '[data-testid="stSidebarNavLink"]'
SIDEBAR = '[data-testid="stSidebar"]'
ERROR_ALERT = '[data-testid="stAlertContentError"]'
INFO_ALERT = '[data-testid="stAlertContentInfo"]'

IDLE_JS = """() => document.querySelector('[data-testid="stApp"]')?.dataset.testScriptState === 'notRunning'
                 && !document.querySelector('[data-stale="true"], [data-testid="stSkeleton"], [data-testid="stAppSkeleton"]')"""
"""True once a script run is over (Streamlit's own run state on the app root), no element is left from the last
run and no element is still a placeholder while its code loads (charts load theirs lazily)."""

PLOTS_DRAWN_JS = """() => [...document.querySelectorAll('.js-plotly-plot')]
                           .every(p => p.querySelector('svg.main-svg') && p.data && p.data.length)"""
"""True when every Plotly chart on the page has drawn its SVG from its data."""


# ---------------------------------------------------------------- the app's pages


@dataclass(frozen=True)
class AppPage:
    """One entry of app.PAGES: its script, the title in the navigation, its URL path ("" for the default page)."""

    path: str
    title: str
    url_path: str

    @property
    def slug(self) -> str:
        return self.url_path or Path(self.path).stem


def app_pages() -> list[AppPage]:
    """The pages app.py lists in PAGES, read from its source (importing app.py would run the app)."""
    tree = ast.parse(APP.read_text())
    lists = [node.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
             and any(isinstance(t, ast.Name) and t.id == "PAGES" for t in node.targets)]
    if len(lists) != 1 or not isinstance(lists[0], ast.List):
        raise AssertionError("app.py must assign PAGES = [st.Page(...), ...] once, as a list literal")
    pages = []
    for call in lists[0].elts:
        if not (isinstance(call, ast.Call) and call.args):
            raise AssertionError(f"app.PAGES entry at line {call.lineno} is not st.Page('path', ...)")
        path = ast.literal_eval(call.args[0])
        options = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg in ("title", "url_path", "default")}
        stem = Path(path).stem
        title = options.get("title") or stem.replace("_", " ")
        url_path = "" if options.get("default") else (options.get("url_path") or stem)
        pages.append(AppPage(path, title, url_path))
    return pages


# ---------------------------------------------------------------- Chromium and the event loop


def _unavailable(why: str) -> None:
    """Skip, or fail when EPLB_E2E=1 says the browser tests must run (CI)."""
    if os.environ.get("EPLB_E2E") == "1":
        pytest.fail(f"EPLB_E2E=1 but the browser tests cannot run: {why}", pytrace=False)
    pytest.skip(f"browser tests need Chromium and Playwright: {why} (set EPLB_E2E=1 to make this an error)")


def chromium_path() -> str | None:
    """$EPLB_CHROMIUM, else the first chromium on PATH, else Debian's /usr/bin/chromium."""
    for candidate in (os.environ.get("EPLB_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                      "/usr/bin/chromium"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="session")
def run():
    """run(coroutine) -> its result, on the one event loop every Playwright object of the session lives on."""
    loop = asyncio.new_event_loop()
    yield lambda coroutine: loop.run_until_complete(coroutine)
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


@pytest.fixture(scope="session")
def browser(run):
    """Headless Chromium (Playwright's async API), shared by every test; each test opens its own contexts."""
    executable = chromium_path()
    if executable is None:
        _unavailable("no chromium executable found (apt-get install -y chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError as exc:
        _unavailable(f"playwright is not installed ({exc}): pip install -r requirements-dev.txt")
    playwright = run(async_playwright().start())
    chromium = run(playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS))
    yield chromium
    run(chromium.close())
    run(playwright.stop())


@contextlib.asynccontextmanager
async def new_session(browser, viewport: dict | None = None):
    """A fresh browser context and page (VIEWPORT unless given): one Streamlit session, waits bounded by RENDER_MS."""
    context = await browser.new_context(viewport=viewport or VIEWPORT, accept_downloads=True)
    context.set_default_timeout(RENDER_MS)
    try:
        yield await context.new_page()
    finally:
        await context.close()


# ---------------------------------------------------------------- the server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """The running ``streamlit run app.py``: its base URL and process."""

    url: str
    process: subprocess.Popen
    log: Path

    def memory_kib(self) -> dict[str, int]:
        """Resident memory of the server's process tree: {"rss": now, "peak": high-water mark}, in KiB (Linux /proc)."""
        totals = {"rss": 0, "peak": 0}
        for pid in _process_tree(self.process.pid):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            totals["rss"] += int(fields.get("VmRSS", "0 kB").split()[0])
            totals["peak"] += int(fields.get("VmHWM", "0 kB").split()[0])
        return totals

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _process_tree(pid: int) -> list[int]:
    """pid and its descendants, from /proc/<pid>/task/<tid>/children."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo.extend(int(c) for c in children.read_text().split())
    return found


@contextlib.contextmanager
def serve(log_name: str = "server.log"):
    """A fresh ``streamlit run app.py`` on a free loopback port (its log in OUTPUT/log_name): healthy, then stopped."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log = OUTPUT / log_name
    command = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
               "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none"]  # as deployed: a source edit during the run must not reload the app
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    running = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"streamlit exited with code {process.returncode}:\n{running.log_tail()}", pytrace=False)
            try:
                with urllib.request.urlopen(f"{running.url}/_stcore/health", timeout=2) as response:
                    if response.read().strip() == b"ok":
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit not healthy after {SERVER_START_S} s:\n{running.log_tail()}", pytrace=False)
            time.sleep(0.2)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture(scope="session")
def server(browser):
    """The server every test shares: healthy before the first test, stopped after the last."""
    with serve() as running:
        yield running


@pytest.fixture(scope="session")
def report(request):
    """report(name, figures): print a line on the terminal (even under capture) and keep it in figures.json."""
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    figures = {}

    def _report(name: str, values: dict) -> None:
        figures[name] = values
        with capture.global_and_fixture_disabled():
            print(f"\n[e2e] {name}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
        OUTPUT.mkdir(parents=True, exist_ok=True)
        (OUTPUT / "figures.json").write_text(json.dumps(figures, indent=2))

    return _report


# ---------------------------------------------------------------- reading the screen


def link(server: Server, url_path: str = "", params: dict | None = None) -> str:
    """The app's URL for a page, with the sidebar's choices as query parameters (a shareable link)."""
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    return f"{server.url}/{url_path}{query}"


async def wait_rendered(page, *, charts: bool = True) -> None:
    """Wait until the page has a heading, the script run is over and (charts) every Plotly chart has drawn."""
    await page.locator("h1").first.wait_for()
    await page.wait_for_function(IDLE_JS, timeout=RENDER_MS)
    if charts:
        await page.wait_for_function(PLOTS_DRAWN_JS, timeout=RENDER_MS)


async def open_app(page, server: Server, url_path: str = "", params: dict | None = None) -> None:
    """Open a page of the app (a fresh session) and wait until it has rendered."""
    await page.goto(link(server, url_path, params))
    await wait_rendered(page)


async def assert_no_exception(page) -> None:
    exceptions = await page.locator(EXCEPTION).all_inner_texts()
    assert not exceptions, exceptions


def summary_line(page):
    """The bold line naming the data and topology (``state.Inputs.describe``), on pages that draw it."""
    return page.locator('[data-testid="stMain"] strong').filter(has_text=" layers x ").first


async def metric_values(page) -> dict[str, str]:
    """The metric cards: label -> value as shown."""
    return await page.eval_on_selector_all(METRIC, """cards => Object.fromEntries(cards.map(card => [
        card.querySelector('[data-testid="stMetricLabel"]').innerText.trim(),
        card.querySelector('[data-testid="stMetricValue"]').innerText.trim()]))""")


def sidebar_slider(page, label: str):
    """The thumb of a sidebar slider, by its label."""
    return page.locator(SIDEBAR).locator(f'[data-testid="stSlider"] input[type="range"][aria-label="{label}"]')


async def set_sidebar_slider(page, label: str, value: int) -> None:
    """Move a sidebar slider (by its label) to value with the arrow keys, one rerun per step, as a keyboard user does.

    Fails when the slider does not offer the value (the sliders offer only values that fit).
    """
    thumb = sidebar_slider(page, label)
    await thumb.focus()
    for _ in range(200):
        shown = await thumb.get_attribute("aria-valuetext")
        if shown == str(value):
            return
        now, top = int(await thumb.input_value()), int(await thumb.get_attribute("max"))  # option indices
        if int(shown) < value and now < top:
            await thumb.press("ArrowRight")
        elif int(shown) > value and now > 0:
            await thumb.press("ArrowLeft")
        else:
            raise AssertionError(f"the {label} slider does not offer {value} (it stops at {shown})")
        await page.wait_for_function(IDLE_JS, timeout=RENDER_MS)
        thumb = sidebar_slider(page, label)
        await thumb.focus()
    raise AssertionError(f"the {label} slider did not reach {value}")


async def screenshot(page, name: str) -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
