"""GET /metrics on both services: the Prometheus text format, counters that move with the lines, bounded labels."""

from __future__ import annotations

import httpx
from conftest import scrape

from livelog.subscriber import LogSubscriber
from livelog.testing import Service, eventually


async def test_counters_move_with_a_line(shared_pair: tuple[Service, Service]) -> None:
    sio, api = shared_pair
    viewer = await LogSubscriber(sio.url, "metered").connect()
    before_api, before_sio = scrape(api), scrape(sio)

    assert httpx.post(f"{api.url}/api/test-log", json={"run_id": "metered", "message": "m"}).status_code == 200
    await eventually(lambda: len(viewer.lines) == 1, what="the line")
    # the broadcaster counts a line sent once the server's answer is back, which may be after the viewer has it
    sent = "livelog_lines_sent_total"
    await eventually(lambda: scrape(api)[sent] == before_api[sent] + 1, what="the line counted as sent")
    after_api, after_sio = scrape(api), scrape(sio)
    await viewer.close()

    for name in ("livelog_lines_logged_total", "livelog_lines_stored_total", "livelog_lines_sent_total"):
        assert after_api[name] == before_api[name] + 1, name
    for name in ("livelog_lines_received_total", "livelog_lines_emitted_total", "livelog_emit_lag_seconds_count"):
        assert after_sio[name] == before_sio[name] + 1, name
    assert after_sio["livelog_clients"] >= 1 and after_sio["livelog_subscriptions"] >= 1
    route = "livelog_http_request_duration_seconds_count{route=/api/test-log}"
    assert after_api[route] == before_api.get(route, 0) + 1
    for kind in ("cannot_reach", "timeout", "other"):
        assert f"livelog_broadcast_failures_total{{kind={kind}}}" in after_api


def test_unknown_paths_share_one_label(shared_pair: tuple[Service, Service]) -> None:
    """A scanner's thousand paths must not make a thousand series."""
    _, api = shared_pair
    for n in range(20):
        assert httpx.get(f"{api.url}/no/such/path/{n}").status_code == 404
    routes = {name for name in scrape(api) if name.startswith("livelog_http_request_duration_seconds_count")}
    assert "livelog_http_request_duration_seconds_count{route=other}" in routes
    assert not any("/no/such" in name for name in routes)
