"""The web page in a real browser: Playwright driving Debian's chromium against a live server.

Skipped when chromium or Playwright is missing; scripts/test-setup.sh installs chromium on CI.
"""

import shutil
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from paperlens import users as user_ops
from paperlens.api import create_app
from paperlens.config import Settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path("/tmp")

playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
if not CHROMIUM.exists():
    pytest.skip("chromium is not installed (scripts/test-setup.sh installs it when run as root)", allow_module_level=True)


@contextmanager
def serve(folder: Path, settings: Settings):
    """A live server in a thread; yields its URL and app (whose library the test may use)."""
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.started, "the server did not start"
    yield f"http://127.0.0.1:{port}", app
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def server(demo_index_dir, tmp_path_factory):
    """Open mode: no keys, loopback."""
    folder = tmp_path_factory.mktemp("web") / "index"
    shutil.copytree(demo_index_dir, folder)
    with serve(folder, Settings(index=folder)) as (url, _app):
        yield url


@pytest.fixture(scope="module")
def keyed_server(demo_index_dir, tmp_path_factory):
    """With API keys: users sign in with their token."""
    folder = tmp_path_factory.mktemp("web-keyed") / "index"
    shutil.copytree(demo_index_dir, folder)
    with serve(folder, Settings(index=folder, api_key="admin-key")) as started:
        yield started


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_search_open_a_paper_like_it_and_see_the_feed_change(server, browser):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(server + "/")
    page.fill("#new-user", "Ada")
    page.click("#user-form button")
    page.wait_for_selector("#user-name")
    assert page.inner_text("#user-name") == "Ada"

    page.goto(server + "/feed")
    before = page.inner_text("#feed")
    assert "popular in this index" in before

    page.click("text=Search")
    page.fill("#q", "video question answering")
    page.press("#q", "Enter")
    page.wait_for_selector(".hit")
    first = page.locator(".hit h3 a").first
    title = first.inner_text()
    page.screenshot(path=str(SCREENSHOTS / "paperlens-search.png"), full_page=False)
    first.click()
    page.wait_for_selector(".paper h1")
    assert page.inner_text(".paper h1") == title
    assert page.locator(".hit").count() >= 5  # its similar papers

    like = page.locator(".paper .act[data-kind='like']")
    with page.expect_response(lambda r: r.url.endswith("/web/mark") and r.status == 200):
        like.click()
    playwright_api.expect(like).to_have_attribute("aria-pressed", "true")

    page.click("#nav-feed")
    page.wait_for_selector("#feed .hit")
    after = page.inner_text("#feed")
    assert after != before and "popular in this index" not in after
    assert f"because of “{title}”" in after
    assert title not in [t.strip() for t in page.locator("#feed .hit h3").all_inner_texts()]
    page.screenshot(path=str(SCREENSHOTS / "paperlens-feed.png"), full_page=False)

    phone = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    phone.context.add_cookies(page.context.cookies())
    phone.goto(server + "/feed")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling on a phone
    phone.screenshot(path=str(SCREENSHOTS / "paperlens-feed-phone.png"), full_page=False)


def test_with_keys_sign_in_with_a_token_like_collect_and_see_the_feed(keyed_server, browser):
    server, app = keyed_server
    grace = user_ops.create_user(app.state.library, "Grace")
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(server + "/feed")
    assert page.locator("#user-form").count() == 0 and "Sign in" in page.inner_text("#feed-intro")

    page.click("#sign-in-link")
    page.fill("#token", "not-a-token")
    page.click("#sign-in-form button")
    assert "does not belong to any user" in page.inner_text("#sign-in-error")
    page.fill("#token", grace.token)
    page.click("#sign-in-form button")
    page.wait_for_selector("#user-name")
    assert page.inner_text("#user-name") == "Grace" and page.url.endswith("/feed")
    assert all(c["httpOnly"] and c["sameSite"] == "Lax" for c in page.context.cookies())
    before = page.inner_text("#feed")

    page.goto(server + "/?q=" + "video question answering")
    first = page.locator(".hit h3 a").first
    title = first.inner_text()
    first.click()
    page.wait_for_selector(".paper h1")
    like = page.locator(".paper .act[data-kind='like']")
    with page.expect_response(lambda r: r.url.endswith("/web/mark") and r.status == 200):
        like.click()
    playwright_api.expect(like).to_have_attribute("aria-pressed", "true")
    page.fill("#collection-name", "to read")
    page.click("#collect-form button")
    page.wait_for_selector("#collections .chip")
    assert "to read" in page.inner_text("#collections")
    page.screenshot(path=str(SCREENSHOTS / "paperlens-paper-signed-in.png"), full_page=False)

    page.click("#nav-collections")
    assert "to read" in page.inner_text(".shelf h2") and title in page.inner_text(".shelf")
    page.click("#nav-feed")
    page.wait_for_selector("#feed .hit")
    after = page.inner_text("#feed")
    assert after != before and f"because of “{title}”" in after

    page.click("#sign-out-form button")
    page.wait_for_selector("#sign-in-link")
    page.goto(server + "/feed")
    assert page.locator("#user-name").count() == 0
