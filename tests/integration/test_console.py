"""The security-room console (/console/) driven in a real headless Chromium against a real gateway.

Needs the Debian package `chromium` (/usr/bin/chromium) and the Python package `playwright`
(only its driver: the browser is the system one, Playwright's downloads are never used); the test
skips, saying which is missing, otherwise. The page's 2 s refresh timer runs on Playwright's fake
clock, so a refresh happens exactly when the test moves time forward.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simulators.servers import Mosquitto
from tests.integration.conftest import Gateway, post_json, publish, wait_for

pytestmark = pytest.mark.integration
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]  # fmt: skip
OPERATOR = "Operator Li"
ACK_NOTE = "Guard <Wang> sent to gate 2 & on the phone"
RESET_NOTE = "False alarm: pressed by a pupil"
HOSTILE = b'<img src=x onerror="window.pwned=1"><b>not json</b>'


def event(seq: int, name: str, category: str = "police") -> bytes:
    body = {"seq": seq, "ts": f"2026-11-23T08:00:0{seq}Z", "event": name, "category": category}
    return json.dumps(body).encode()


@pytest.fixture
def playwright_api() -> Any:
    """playwright.sync_api, or a skip naming what to install."""
    if not CHROMIUM.exists():
        pytest.skip(f"needs {CHROMIUM}: apt-get install chromium (Debian package)")
    return pytest.importorskip("playwright.sync_api", reason="needs pip install playwright")


@pytest.fixture
def page(playwright_api: Any) -> Iterator[Any]:
    """A page in the system Chromium; fails the test on any uncaught script error."""
    errors: list[str] = []
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        browser.close()
    assert errors == []


def refreshes(page: Any) -> int:
    return int(page.evaluate("Number(document.body.dataset.refreshes ?? 0)"))


def tick(page: Any) -> None:
    """Let the page's refresh timer fire once and wait for that refresh to finish."""
    before = refreshes(page)
    page.clock.run_for(2100)
    page.wait_for_function(f"Number(document.body.dataset.refreshes) > {before}")


def test_operator_acknowledges_and_resets_an_alarm_through_the_console(
    broker: Mosquitto, gateway: Gateway, page: Any, playwright_api: Any
) -> None:
    expect = playwright_api.expect
    publish(broker.port, "campus/s1/button/b1/event", event(1, "press", "police"))
    publish(broker.port, "campus/s2/button/b2/event", event(2, "press", "fire"))
    publish(broker.port, "campus/s1/button/b3/event", event(3, "test"))
    publish(broker.port, "campus/s1/button/b4/status", HOSTILE)
    alarms = wait_for(
        lambda: (p := gateway.get("/api/alarms?open=true"))["total"] == 3 and p["items"], 15, "3"
    )
    wait_for(lambda: gateway.get("/api/dead-letters")["total"] == 1, 10, "the dead letter")
    police, fire, test = (next(a for a in alarms if a["device"] == d) for d in ("b1", "b2", "b3"))

    page.clock.install()
    page.goto(gateway.api("/console/"))
    rows = page.locator("#alarms tr")
    expect(rows).to_have_count(3)
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.id)") == [a["id"] for a in alarms]
    expect(page.locator("#health")).to_contain_text("Gateway ok")
    expect(page.locator("#alarms-title")).to_have_text("Open alarms: 3 (3 unacknowledged)")
    row = {a["device"]: page.locator(f'#alarms tr[data-id="{a["id"]}"]') for a in alarms}
    expect(row["b3"].locator(".testlabel")).to_have_text("TEST")
    expect(row["b1"]).to_have_class("c-police state-new flash")

    # Acknowledge the police alarm with a note.
    page.fill("#operator", OPERATOR)
    row["b1"].locator("input").fill(ACK_NOTE)
    row["b1"].get_by_role("button", name="Acknowledge").click()
    acked = wait_for(
        lambda: (a := gateway.get(f"/api/alarms/{police['id']}"))["state"] == "acknowledged" and a,
        10, "the acknowledgement",
    )  # fmt: skip
    assert (acked["acknowledged_by"], acked["acknowledged_note"]) == (OPERATOR, ACK_NOTE)
    expect(row["b1"]).to_contain_text(f"acknowledged by {OPERATOR}")
    expect(row["b1"]).to_contain_text(ACK_NOTE)  # as text: "<Wang>" is not markup
    expect(row["b1"].get_by_role("button")).to_have_text("Reset")

    # A note being typed survives refreshes, focus included.
    note = row["b2"].locator("input")
    note.fill("half typed")
    tick(page)
    tick(page)
    expect(note).to_have_value("half typed")
    expect(note).to_be_focused()

    # Another console acknowledges first: the API's refusal is shown verbatim.
    post_json(gateway.api(f"/api/alarms/{fire['id']}/ack"), {"operator": "Other console"})
    row["b2"].get_by_role("button", name="Acknowledge").click()
    expect(row["b2"].locator(".error")).to_have_text(
        "HTTP 409: cannot acknowledge an alarm that is acknowledged"
    )
    expect(row["b2"]).to_contain_text("acknowledged by Other console")
    expect(note).to_have_value("half typed")

    # Dead letters are shown as text, never as markup.
    expect(page.locator("#letters td").nth(3)).to_have_text(HOSTILE.decode())
    assert page.locator("#letters img").count() == 0
    assert page.evaluate("window.pwned") is None
    page.screenshot(path="/tmp/console.png", full_page=True)

    # Reset the police alarm: it leaves the open list, the others stay.
    row["b1"].locator("input").fill(RESET_NOTE)
    row["b1"].get_by_role("button", name="Reset").click()
    wait_for(lambda: gateway.get(f"/api/alarms/{police['id']}")["state"] == "reset", 10, "reset")
    closed = gateway.get(f"/api/alarms/{police['id']}")
    assert (closed["reset_by"], closed["reset_note"]) == (OPERATOR, RESET_NOTE)
    still_open = [a["id"] for a in gateway.get("/api/alarms?open=true")["items"]]
    assert still_open == [fire["id"], test["id"]]
    expect(row["b1"]).to_have_count(0)
    expect(rows).to_have_count(2)
