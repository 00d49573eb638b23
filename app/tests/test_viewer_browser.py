"""The viewer in a real browser (Debian's chromium, driven by Playwright) against real services: the run list, a
run's lines live and in order over the official Socket.IO client's WebSocket, a reload in the middle of a run,
search, filter, follow/pause, permalinks, ANSI colour, download and a 100,000-line run.

Every wait is on a condition with a generous bound; timings are printed, never asserted."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser import launch, same_origin_api
from conftest import Services
from playwright.sync_api import Browser, Page, expect, sync_playwright

from livelog.testing import Service, free_port

KEY, SECRET = "viewer-test-key-0123", "viewer-test-secret-0123456789abcdef-0123456789"
SETTINGS = {"LIVELOG_API_KEYS": KEY, "LIVELOG_VIEWER_TOKEN_SECRET": SECRET, "LIVELOG_QUEUE_SIZE": 200_000}
AUTH = {"Authorization": f"Bearer {KEY}"}
WAIT_MS = 60_000  # a bound for a failing test on a loaded machine, not a performance claim
SGR = re.compile(r"\x1b\[[0-9;]*m")
expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="module")
def servers(module_services: Services) -> tuple[Service, Service]:
    return module_services.pair(**SETTINGS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@contextmanager
def viewer_page(browser: Browser, api: Service) -> Iterator[Page]:
    """A page in a context of its own; at the end, it must not have thrown."""
    context = browser.new_context(viewport={"width": 1280, "height": 720}, accept_downloads=True)
    same_origin_api(context, api.url)
    # the main thread's long tasks (50 ms and more), for the figures of a fast run
    context.add_init_script(
        "window.longTasks = []; new PerformanceObserver((list) => list.getEntries()"
        ".forEach((task) => window.longTasks.push(task.duration))).observe({type: 'longtask', buffered: true});"
    )
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        context.unroute_all(behavior="ignoreErrors")  # the run list's poll may be in flight
        context.close()
    assert errors == [], f"the page threw: {errors}"


@pytest.fixture
def page(browser: Browser, servers: tuple[Service, Service]) -> Iterator[Page]:
    with viewer_page(browser, servers[1]) as page:
        yield page


def start(api: Service, run_id: str, **body: Any) -> None:
    started = httpx.post(f"{api.url}/api/runs", json={"run_id": run_id, **body}, headers=AUTH)
    assert started.status_code == 202, started.text


def status(api: Service, run_id: str) -> str:
    return str(httpx.get(f"{api.url}/api/runs/{run_id}", headers=AUTH).json()["status"])


def finished(api: Service, run_id: str, **body: Any) -> None:
    start(api, run_id, **body)
    deadline = time.monotonic() + 120
    while status(api, run_id) == "running":
        assert time.monotonic() < deadline, f"run {run_id} still running"
        time.sleep(0.1)


def stored(api: Service, run_id: str) -> list[dict[str, Any]]:
    """What the API has stored of the run, up to the first short page (a live run is read up to where it is)."""
    lines: list[dict[str, Any]] = []
    while True:
        params = {"after_seq": len(lines), "limit": 10_000}
        page = httpx.get(f"{api.url}/api/runs/{run_id}/logs", params=params, headers=AUTH).json()
        lines += page
        if len(page) < 10_000:
            return lines


def token(api: Service, runs: list[str]) -> str:
    return str(httpx.post(f"{api.url}/api/viewer-tokens", json={"runs": runs}, headers=AUTH).json()["token"])


def open_viewer(page: Page, sio: Service, api: Service, fragment: str, runs: list[str] | None = None) -> None:
    page.goto(f"{sio.url}/#{fragment}{'&' if fragment else ''}token={token(api, runs or ['*'])}")


def state(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate("window.livelog.state()")
    return result


def wait_last(page: Page, seq: int) -> None:
    page.wait_for_function("seq => window.livelog && window.livelog.state().lines >= seq", arg=seq)


def loaded(page: Page) -> None:
    page.wait_for_selector("#log[data-loaded=true]", state="attached")


def rendered_seqs(page: Page) -> list[int]:
    return [int(seq) for seq in page.eval_on_selector_all("#log-rows .row", "rows => rows.map(r => r.dataset.seq)")]


def test_run_list_live_lines_and_a_reload_mid_run(page: Page, servers: tuple[Service, Service]) -> None:
    sio, api = servers
    start(api, "live-reload", workflow="chatter", lines=500, interval_ms=25)
    open_viewer(page, sio, api, "")
    assert "token" not in page.url, "the token leaves the address bar"
    assert page.evaluate("sessionStorage.getItem('livelog-token')"), "and stays for the tab's session"

    run = page.get_by_role("list").get_by_role("link", name=re.compile("live-reload"))
    expect(run).to_contain_text("running")
    run.click()
    assert page.url.endswith("#run=live-reload")
    wait_last(page, 30)
    assert status(api, "live-reload") == "running", "lines arrived while the run went on"
    expect(page.locator("#connection")).to_have_attribute("data-transport", "websocket")
    seen_before_reload = state(page)["last"]

    page.reload()  # the tab's session keeps the token; the fragment keeps the run
    assert page.url.endswith("#run=live-reload")
    wait_last(page, seen_before_reload + 20)
    assert status(api, "live-reload") == "running", "the reload came back in the middle of the run"
    expect(page.locator("#connection")).to_have_attribute("data-transport", "websocket")

    lines = stored(api, "live-reload")
    while status(api, "live-reload") == "running" or len(lines) < 502:
        time.sleep(0.2)
        lines = stored(api, "live-reload")
    wait_last(page, len(lines))
    assert page.evaluate("window.livelog.seqs()") == [line["seq"] for line in lines], "no gap, no duplicate"
    seqs = rendered_seqs(page)
    assert seqs and seqs == list(range(seqs[0], seqs[0] + len(seqs))) and seqs[-1] == len(lines), "in order, at the end"
    expect(page.locator(f'#log-rows .row[data-seq="{len(lines)}"]')).to_contain_text("chatter line 500/500")
    expect(run).to_contain_text("succeeded")


def test_search_finds_a_line_that_is_not_rendered_and_filters(page: Page, servers: tuple[Service, Service]) -> None:
    sio, api = servers
    finished(api, "search-3k", workflow="chatter", lines=3000, interval_ms=0)
    open_viewer(page, sio, api, "run=search-3k")
    loaded(page)
    wait_last(page, 3002)
    assert 17 + 1 not in rendered_seqs(page), "line 17 is far above the rows drawn"

    page.keyboard.press("/")
    expect(page.get_by_label("Search")).to_be_focused()
    page.keyboard.type("line 17/3000")
    expect(page.locator("#matches")).to_have_text("1 of 1")
    expect(page.locator('#log-rows .row.current[data-seq="19"]')).to_contain_text("chatter line 17/3000")
    expect(page.get_by_role("button", name="Follow")).to_have_attribute("aria-pressed", "false")

    page.get_by_label("Search").fill("line 29")  # 29, 290..299, 2900..2999: 111 lines
    expect(page.locator("#matches")).to_have_text("1 of 111")
    page.get_by_role("button", name="Next match").click()
    expect(page.locator("#matches")).to_have_text("2 of 111")
    page.get_by_role("button", name="Previous match").click()
    page.get_by_role("button", name="Previous match").click()
    expect(page.locator("#matches")).to_have_text("111 of 111")
    page.get_by_label("Only matching lines").check()
    page.wait_for_function("() => window.livelog.state().shown === 111")
    page.wait_for_function(  # the next frame draws only matching lines
        """() => { const texts = [...document.querySelectorAll('#log-rows .row .msg')].map(row => row.textContent);
                   return texts.length > 0 && texts.every(text => text.includes('line 29')); }"""
    )
    page.get_by_label("Only matching lines").uncheck()
    page.wait_for_function("() => window.livelog.state().shown === 3002")

    # another run, chosen in the list, takes the log's place whole: none of the first run's rows stay
    finished(api, "switched-to", workflow="chatter", lines=5, interval_ms=0)
    page.get_by_role("list").get_by_role("link", name=re.compile("switched-to")).click()
    page.get_by_label("Search").fill("")
    loaded(page)
    expect(page.locator("#log-rows .row")).to_have_count(7)
    expect(page.locator("#log-rows .row").last).to_contain_text("chatter line 5/5")
    cdp = page.context.new_cdp_session(page)
    log = cdp.send("Runtime.evaluate", {"expression": "document.getElementById('log')"})["result"]["objectId"]
    listeners = cdp.send("DOMDebugger.getEventListeners", {"objectId": log})["listeners"]
    assert [listener["type"] for listener in listeners].count("scroll") == 1, "the first run's view let go of the log"


def test_pause_stops_auto_scroll_and_new_lines_returns_to_live(page: Page, servers: tuple[Service, Service]) -> None:
    sio, api = servers
    start(api, "pause-live", workflow="chatter", lines=1500, interval_ms=10)
    open_viewer(page, sio, api, "run=pause-live")
    wait_last(page, 200)
    follow = page.get_by_role("button", name="Follow")
    expect(follow).to_have_attribute("aria-pressed", "true")

    page.locator("#log").hover()
    page.mouse.wheel(0, -2000)
    expect(follow).to_have_attribute("aria-pressed", "false")
    page.wait_for_function(  # the wheel's scroll has settled: the same position twice in a row
        "() => { const top = document.getElementById('log').scrollTop, same = window.lastTop === top;"
        " window.lastTop = top; return same; }",
        polling=250,
    )
    paused_at = page.eval_on_selector("#log", "log => log.scrollTop")
    shown = state(page)["lines"]
    new_lines = page.locator("#new-lines")
    expect(new_lines).to_have_text(re.compile(r"^\d+ new lines? ↓$"))
    wait_last(page, shown + 100)
    assert page.eval_on_selector("#log", "log => log.scrollTop") == paused_at, "paused: the view stays put"
    assert int(new_lines.inner_text().split()[0]) >= 100

    new_lines.click()
    expect(follow).to_have_attribute("aria-pressed", "true")
    expect(new_lines).to_be_hidden()
    page.wait_for_function(
        """() => { const log = document.getElementById('log'), rows = document.querySelectorAll('#log-rows .row');
                   return log.scrollTop + log.clientHeight >= log.scrollHeight - 2
                       && Number(rows[rows.length - 1].dataset.seq) === window.livelog.state().lines; }"""
    )
    page.get_by_role("button", name="Top").click()
    expect(follow).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#log-rows .row").first).to_have_attribute("data-seq", "1")
    page.locator("#log").focus()
    page.keyboard.press("End")
    expect(follow).to_have_attribute("aria-pressed", "true")


def test_a_permalink_scrolls_to_its_line_and_highlights_it(page: Page, servers: tuple[Service, Service]) -> None:
    sio, api = servers
    finished(api, "permalink", workflow="chatter", lines=2000, interval_ms=0)
    open_viewer(page, sio, api, "run=permalink&line=1234", runs=["permalink"])
    assert page.url.endswith("#run=permalink&line=1234"), "the token is gone, the rest of the fragment stays"
    target = page.locator("#log-rows .row.target")
    expect(target).to_have_attribute("data-seq", "1234")
    expect(target).to_contain_text("chatter line 1232/2000")
    expect(target).to_be_in_viewport()
    assert page.locator("#log-rows .row.target").count() == 1
    expect(page.get_by_role("button", name="Follow")).to_have_attribute("aria-pressed", "false")
    link = target.get_by_role("link", name="1234")
    assert link.get_attribute("href") == "#run=permalink&line=1234", "the line's link is its permalink"


def test_a_run_that_does_not_exist_and_an_id_no_run_can_have_are_named(
    page: Page, servers: tuple[Service, Service]
) -> None:
    sio, api = servers
    open_viewer(page, sio, api, "run=no-such-run")
    expect(page.locator("#notice")).to_have_text("run no-such-run: HTTP 404: no run no-such-run")
    page.evaluate("location.hash = '#run=' + encodeURIComponent('<img src=x>')")
    expect(page.locator("#notice")).to_have_text('"<img src=x>" is not a run id (letters, digits, _.:-)')
    assert page.locator("img").count() == 0, "shown as text"


def test_lines_trimmed_from_the_store_are_reported(page: Page, servers: tuple[Service, Service]) -> None:
    """A run whose first stored line is above 1 (its oldest lines deleted from the API's store, as a retention
    job would): the page says so and starts at the first line there is."""
    sio, api = servers
    finished(api, "trimmed", workflow="chatter", lines=20, interval_ms=0)
    with sqlite3.connect(Path(api.env["LIVELOG_DATA_DIR"]) / "api.sqlite3") as store:
        store.execute("DELETE FROM lines WHERE run_id = 'trimmed' AND seq <= 10")
    open_viewer(page, sio, api, "run=trimmed")
    expect(page.locator("#notice")).to_have_text(
        "Lines 1\u201310 of this run were removed by retention; the log starts at line 11."  # an en dash
    )
    expect(page.locator("#log-rows .row").first).to_have_attribute("data-seq", "11")
    expect(page.locator("#log-rows .row")).to_have_count(12)


def test_a_hole_in_the_stored_lines_is_reported(page: Page, servers: tuple[Service, Service]) -> None:
    """Lines missing in the middle of what the API has (the store left them out when its queue was full): the page
    says which, and shows the others in order."""
    sio, api = servers
    finished(api, "holed", workflow="chatter", lines=20, interval_ms=0)
    with sqlite3.connect(Path(api.env["LIVELOG_DATA_DIR"]) / "api.sqlite3") as store:
        store.execute("DELETE FROM lines WHERE run_id = 'holed' AND seq BETWEEN 5 AND 7")
    open_viewer(page, sio, api, "run=holed")
    expect(page.locator("#notice")).to_have_text("lines 5\u20137 are not stored")  # an en dash
    expect(page.locator("#log-rows .row")).to_have_count(19)
    assert rendered_seqs(page) == [1, 2, 3, 4, *range(8, 23)]


def test_ansi_colour_levels_and_download(page: Page, servers: tuple[Service, Service], tmp_path: Path) -> None:
    sio, api = servers
    finished(api, "colours", workflow="colour-demo", lines=30, interval_ms=0)
    open_viewer(page, sio, api, "run=colours")
    loaded(page)
    error = page.locator('#log-rows .row[data-seq="5"] .msg')
    expect(error).to_have_text("error: test_upload failed: connection reset")
    red = error.locator("span", has_text="error:")
    assert red.evaluate("span => getComputedStyle(span).color") == "rgb(239, 68, 68)", "ANSI red, as colour"
    messages = page.eval_on_selector_all("#log-rows .row .msg", "rows => rows.map(r => r.textContent)")
    assert len(messages) == 30 and not any("\x1b" in text or "[0m" in text for text in messages)

    first_time = page.locator('#log-rows .row[data-seq="1"] .ts')
    expect(first_time).to_have_text(re.compile(r"^\d\d:\d\d:\d\d\.\d{3}$"))  # absolute (UTC) by default
    page.get_by_role("button", name="Relative time").click()
    expect(first_time).to_have_text(re.compile(r"^\+00:0\d\.\d{3}$"))  # since the run started
    page.get_by_role("button", name="Relative time").click()

    page.get_by_label("Level").select_option("ERROR")
    page.wait_for_function("() => window.livelog.state().shown === 5")
    # the rows are redrawn at the next animation frame, after the state changes
    only_errors = "() => [...document.querySelectorAll('#log-rows .row')].every(r => r.className === 'row ERROR')"
    page.wait_for_function(only_errors)
    assert set(page.eval_on_selector_all("#log-rows .row", "rows => rows.map(r => r.className)")) == {"row ERROR"}
    page.get_by_label("Level").select_option("")
    page.get_by_role("button", name="Wrap").click()  # long lines wrap; rows are still windowed and in order
    expect(page.locator("#log")).to_have_class("wrap")
    expect(page.locator("#log-rows .row").first).to_have_attribute("data-seq", "1")
    page.get_by_role("button", name="Wrap").click()

    with page.expect_download() as download:
        page.get_by_role("button", name="Download").click()
    assert download.value.suggested_filename == "livelog-colours.log"
    saved = tmp_path / "colours.log"
    download.value.save_as(saved)
    expected = [
        f"{datetime.fromtimestamp(line['ts'], UTC).strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3]}Z "
        f"{line['level']} {SGR.sub('', line['message'])}"
        for line in stored(api, "colours")
    ]
    assert saved.read_text().splitlines() == expected and len(expected) == 30

    # a phone's width: the controls stay on screen, the page does not scroll sideways
    page.set_viewport_size({"width": 390, "height": 800})
    for name in ("Follow", "Download"):
        expect(page.get_by_role("button", name=name)).to_be_in_viewport()
    expect(page.get_by_label("Search")).to_be_in_viewport()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.get_by_role("button", name="Bottom").click()
    page.get_by_role("button", name="Wrap").click()  # rows grow taller: following stays on, at the last line
    expect(page.locator("#log-rows .row").last).to_contain_text("cache hit ratio")
    page.wait_for_function(  # row 30 within the log's visible box (the log itself may be below the fold here)
        """() => { const row = document.querySelector('#log-rows .row[data-seq="30"]');
                   const log = document.getElementById('log');
                   if (!row) return false;
                   const r = row.getBoundingClientRect(), l = log.getBoundingClientRect();
                   return r.top >= l.top - 1 && r.bottom <= l.bottom + 1; }"""
    )
    expect(page.get_by_role("button", name="Follow")).to_have_attribute("aria-pressed", "true")


def test_a_100k_line_run_opens_and_scrolls_with_few_rows(
    page: Page, servers: tuple[Service, Service], record_property: Any
) -> None:
    sio, api = servers
    finished(api, "big-100k", workflow="chatter", lines=100_000, interval_ms=0)
    count = len(stored(api, "big-100k"))
    assert count == 100_002  # the decision, the action, the lines
    open_viewer(page, sio, api, "run=big-100k")
    loaded(page)
    wait_last(page, count)
    page.get_by_role("button", name="Top").click()
    expect(page.locator("#log-rows .row").first).to_have_attribute("data-seq", "1")
    page.keyboard.press("End")
    expect(page.locator("#log-rows .row").last).to_have_attribute("data-seq", str(count))
    rows = page.locator("#log-rows .row").count()
    assert rows < 2000, f"{rows} rows in the DOM for {count} lines"
    figures = page.evaluate(
        """() => ({
            painted_ms: performance.getEntriesByName('livelog:run-painted')[0].startTime,
            loaded_ms: performance.getEntriesByName('livelog:run-loaded')[0].startTime,
        })"""
    )
    cdp = page.context.new_cdp_session(page)
    cdp.send("HeapProfiler.collectGarbage")
    cdp.send("Performance.enable")
    metrics = {metric["name"]: metric["value"] for metric in cdp.send("Performance.getMetrics")["metrics"]}
    long_tasks = page.evaluate("window.longTasks")
    figures.update(
        rows=rows,
        heap_mb=round(metrics["JSHeapUsedSize"] / 2**20, 1),
        dom_nodes=metrics["Nodes"],
        long_tasks=len(long_tasks),
        long_task_max_ms=round(max(long_tasks, default=0)),
    )
    record_property("viewer_100k", figures)
    print(f"\nviewer, 100,002-line run: {json.dumps(figures)}")


def test_a_fast_run_streams_whole_and_the_tab_answers(
    page: Page, servers: tuple[Service, Service], record_property: Any
) -> None:
    """A run at a few thousand lines a second for several seconds, followed live: every line, in order; how the tab
    fared is printed (its long tasks, the round trip of clicks while the lines pour in), not asserted."""
    sio, api = servers
    start(api, "fast-live", workflow="chatter", lines=20_000, interval_ms=5, burst=20)
    open_viewer(page, sio, api, "run=fast-live")
    wait_last(page, 1000)
    clicks = []
    while status(api, "fast-live") == "running":
        clicked = time.monotonic()
        page.get_by_role("button", name="Wrap").click()  # waits until the page has handled it
        clicks.append(time.monotonic() - clicked)
    run = httpx.get(f"{api.url}/api/runs/fast-live", headers=AUTH).json()
    wait_last(page, run["lines"])
    assert page.evaluate("window.livelog.seqs()") == list(range(1, run["lines"] + 1))
    long_tasks = page.evaluate("window.longTasks")
    figures = {
        "lines_per_s": round(run["lines"] / (run["finished"] - run["created"])),
        "clicks_while_streaming": len(clicks),
        "click_max_ms": round(max(clicks, default=0) * 1000),
        "long_tasks": len(long_tasks),
        "long_task_max_ms": round(max(long_tasks, default=0)),
    }
    record_property("viewer_fast_run", figures)
    print(f"\nviewer, 20,002 lines live in bursts of 20 every 5 ms: {json.dumps(figures)}")


def test_a_run_whose_live_lines_never_arrive_is_shown_whole_once_it_ends(browser: Browser, services: Services) -> None:
    """The API broadcasts to a port where nothing listens, so no line reaches the page live: once the run list says
    the run has ended, the page reads what it lacks from the API."""
    sio = services("socketio", **SETTINGS)
    api = services("api", SOCKETIO_PORT=free_port(), **SETTINGS)
    start(api, "never-live", workflow="chatter", lines=1000, interval_ms=10)
    with viewer_page(browser, api) as page:
        open_viewer(page, sio, api, "run=never-live")
        loaded(page)
        assert status(api, "never-live") == "running", "the page opened while the run went on"
        shown_at_open = state(page)["last"]
        while status(api, "never-live") == "running":
            time.sleep(0.2)
        total = len(stored(api, "never-live"))
        assert total == 1002 and shown_at_open < total
        wait_last(page, total)
        assert page.evaluate("window.livelog.seqs()") == list(range(1, total + 1)), "no gap, no duplicate"
        print(f"\nviewer: {shown_at_open} lines at open, the other {total - shown_at_open} read when the run ended")


def test_a_reconnect_resumes_from_the_last_seq(browser: Browser, services: Services) -> None:
    sio, api = services.pair(**SETTINGS)
    with viewer_page(browser, api) as page:
        resume_after_a_socketio_crash(page, sio, api)


def resume_after_a_socketio_crash(page: Page, sio: Service, api: Service) -> None:
    start(api, "resume", workflow="chatter", lines=5000, interval_ms=10)
    open_viewer(page, sio, api, "run=resume")
    wait_last(page, 50)
    connection = page.locator("#connection")
    sio.stop(signal.SIGKILL)
    expect(connection).to_have_text(re.compile("^reconnecting…"))
    seen = state(page)["last"]
    deadline = time.monotonic() + 60
    while len(stored(api, "resume")) < seen + 100:  # lines the page has to catch up on
        assert time.monotonic() < deadline, "the run went on while the Socket.IO server was down"
        time.sleep(0.1)
    sio.start()
    expect(connection).to_have_text(re.compile(r"^resumed, \+\d+ lines?$"))
    assert int(connection.inner_text().split("+")[1].split()[0]) >= 100
    lines = stored(api, "resume")  # the run goes on: what is stored by now, the page has too, and then more
    wait_last(page, len(lines) + 50)
    seqs = page.evaluate("window.livelog.seqs()")
    assert seqs == list(range(1, len(seqs) + 1)), "no gap, no duplicate"
    assert seqs[: len(lines)] == [line["seq"] for line in lines]
