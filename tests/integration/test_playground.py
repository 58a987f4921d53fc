"""/playground: the page, its flag, its auth (Basic with the API key), the structured events it draws, and the page
itself driven in headless Chromium (Debian's `chromium` with Playwright; skipped where either is missing)."""

from __future__ import annotations

import base64
import shutil
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from ponder.server.settings import ServerSettings
from ponder.strategies.steps import StepFormat
from ponder.testing import FakeEngine, RulePRM
from ponder.verifiers.registry import VerifierSet
from tests.helpers import client, fake_app, sse_events

KEY = "sesame"
FMT = StepFormat()
WORDS = ("good", "bad", "ok", "good")


def steps(prompt, params, index):
    """Step ``index`` of the path so far is "<word> <tag>.<index>"; three steps in, it answers."""
    done = FMT.steps(prompt.prefix)
    tag = done[-1].split()[-1] if done else "s"
    child = f"{tag}.{index}"
    if len(done) == 2:
        return f"{WORDS[index % 4]} {child}</think>{child}"
    return f"{WORDS[index % 4]} {child}\nnot reached"


def app_with(**settings):
    vset = VerifierSet([RulePRM(steps_only=True)], default="rule_prm")
    return fake_app(FakeEngine(steps), ServerSettings(**settings), vset)


def basic(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"me:{password}".encode()).decode()}


async def test_the_page_and_its_script_are_served_and_the_flag_turns_them_off():
    app, _ = app_with()
    async with client(app) as c:
        page = await c.get("/playground")
        script = await c.get("/playground/playground.js")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/playground/playground.js">' in page.text
    assert script.status_code == 200 and "/v1/chat/completions" in script.text
    off, _ = app_with(playground=False)
    async with client(off) as c:
        assert (await c.get("/playground")).status_code == 404


async def test_behind_the_api_key_a_browser_is_asked_for_it():
    app, _ = app_with(api_key=KEY)
    async with client(app) as c:
        denied = await c.get("/playground")
        wrong = await c.get("/playground", headers=basic("nope"))
        page = await c.get("/playground", headers=basic(KEY))
        api = await c.get("/v1/models", headers=basic(KEY))  # the page's own calls carry the same credentials
        bearer = await c.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"})
        api_denied = await c.get("/v1/models")
    assert denied.status_code == 401 and denied.headers["www-authenticate"].startswith("Basic")
    assert wrong.status_code == 401
    assert page.status_code == 200 and api.status_code == 200 and bearer.status_code == 200
    assert api_denied.status_code == 401 and api_denied.headers["www-authenticate"] == "Bearer"


async def test_with_return_trace_each_progress_chunk_carries_its_event():
    app, _ = app_with()
    body = {
        "model": "fake-model",
        "messages": [{"role": "user", "content": "2+3?"}],
        "strategy": "beam_search",
        "strategy_options": {"beam_width": 2, "expansions": 2},
        "budget": {"max_samples": 4},
        "stream": True,
        "return_trace": True,
    }
    async with client(app) as c:
        resp = await c.post("/v1/chat/completions", json=body)
        plain = await c.post("/v1/chat/completions", json={**body, "return_trace": False})
    events = [e["ponder"]["event"] for e in sse_events(resp.text)[:-1] if "event" in (e.get("ponder") or {})]
    steps_seen = [e for e in events if e["kind"] == "step"]
    assert steps_seen and all(path["steps"] and "score" in path for e in steps_seen for path in e["kept"])
    assert not any("event" in (e.get("ponder") or {}) for e in sse_events(plain.text)[:-1])


# ---- the page in a real browser ----


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api")
    return path


@pytest.fixture
def served() -> Iterator[str]:
    """The fake app behind an API key, served by a real uvicorn in a thread."""
    import uvicorn

    app, _ = app_with(api_key=KEY)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_the_page_chats_and_draws_the_search_in_headless_chromium(served, tmp_path):
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_context(http_credentials={"username": "me", "password": KEY}).new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{served}/playground")
            page.wait_for_selector("#strategy option[value=beam_search]", state="attached")
            page.select_option("#strategy", "beam_search")
            page.fill("#max_samples", "4")
            page.fill("#options", '{"beam_width": 2, "expansions": 2}')
            page.fill("#prompt", "What is 2+3?")
            page.click("#send")
            page.wait_for_function("document.querySelector('#stat-strategy').textContent === 'beam_search'")
            assert page.text_content(".msg.user") == "What is 2+3?"
            answer = page.text_content(".msg.assistant > div:last-child")
            assert answer.startswith("s."), answer  # the chosen path's answer, e.g. "s.0.0.0"
            assert "step 1" in page.text_content("#log")  # the live progress lines
            assert page.locator("#tree circle").count() >= 5  # question, 2 kept paths, their children
            assert page.locator("#candidates tr").count() >= 1
            assert int(page.text_content("#stat-samples")) >= 1
            page.screenshot(path=str(tmp_path / "playground.png"), full_page=True)
            page.select_option("#strategy", "")  # plain decoding: the tokens stream as they come, no search drawn
            page.fill("#prompt", "And 4+4?")
            page.click("#send")
            page.wait_for_function("document.querySelectorAll('.msg.assistant').length === 2")
            page.wait_for_function("document.querySelector('#stat-strategy').textContent === 'none'")
            assert page.locator("#tree circle").count() == 1  # the question alone
            assert errors == []
        finally:
            browser.close()
