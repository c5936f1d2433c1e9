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

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"needs {CHROMIUM}: apt-get install chromium"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="needs pip install playwright")
expect = sync_api.expect
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
def page() -> Iterator[Any]:
    """A page in the system Chromium; fails the test on any uncaught script error."""
    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
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


def open_alarms(gateway: Gateway, count: int) -> list[dict[str, Any]]:
    page = wait_for(lambda: (p := gateway.get("/api/alarms?open=true"))["total"] == count and p,
                    15, f"{count} open alarms")  # fmt: skip
    items: list[dict[str, Any]] = page["items"]
    return items


def test_operator_acknowledges_and_resets_an_alarm_through_the_console(
    broker: Mosquitto, gateway: Gateway, page: Any
) -> None:
    publish(broker.port, "campus/s1/button/b1/event", event(1, "press", "police"))
    publish(broker.port, "campus/s2/button/b2/event", event(2, "press", "fire"))
    police, fire = open_alarms(gateway, 2)

    page.clock.install()
    page.goto(gateway.api("/console/"))
    rows = page.locator("#alarms tr")
    expect(rows).to_have_count(2)
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.id)") == [police["id"], fire["id"]]
    expect(page.locator("#health")).to_contain_text("Gateway ok")
    row = {a["device"]: page.locator(f'#alarms tr[data-id="{a["id"]}"]') for a in (police, fire)}

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

    # Another console acknowledges first: the API's refusal is shown verbatim, the note is kept.
    post_json(gateway.api(f"/api/alarms/{fire['id']}/ack"), {"operator": "Other console"})
    row["b2"].get_by_role("button", name="Acknowledge").click()
    expect(row["b2"].locator(".error")).to_have_text(
        "HTTP 409: cannot acknowledge an alarm that is acknowledged"
    )
    expect(row["b2"]).to_contain_text("acknowledged by Other console")
    expect(note).to_have_value("half typed")

    # Reset the police alarm: it leaves the open list, the fire alarm stays.
    row["b1"].locator("input").fill(RESET_NOTE)
    row["b1"].get_by_role("button", name="Reset").click()
    wait_for(lambda: gateway.get(f"/api/alarms/{police['id']}")["state"] == "reset", 10, "reset")
    closed = gateway.get(f"/api/alarms/{police['id']}")
    assert (closed["reset_by"], closed["reset_note"]) == (OPERATOR, RESET_NOTE)
    assert [a["id"] for a in gateway.get("/api/alarms?open=true")["items"]] == [fire["id"]]
    expect(row["b1"]).to_have_count(0)
    expect(rows).to_have_count(1)

    page.reload()
    expect(page.locator("#operator")).to_have_value(OPERATOR)


# Counts oscillators started, i.e. beeps actually played (an AudioContext still suspended by the
# autoplay policy plays nothing and creates none).
COUNT_BEEPS = """
window.oscillators = 0;
const create = AudioContext.prototype.createOscillator;
AudioContext.prototype.createOscillator = function () {
  window.oscillators++;
  return create.call(this);
};
"""


def test_new_alarms_flash_and_beep_tests_are_grey_and_data_is_text(
    broker: Mosquitto, gateway: Gateway, page: Any
) -> None:
    publish(broker.port, "campus/s1/button/b3/event", event(1, "test"))
    publish(broker.port, "campus/s1/button/b4/status", HOSTILE)
    open_alarms(gateway, 1)
    wait_for(lambda: gateway.get("/api/dead-letters")["total"] == 1, 10, "the dead letter")

    page.add_init_script(COUNT_BEEPS)
    page.clock.install()
    page.goto(gateway.api("/console/"))
    rows = page.locator("#alarms tr")
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".testlabel")).to_have_text("TEST")
    expect(rows.first).to_have_class("c-police state-new test")  # grey, no flash, no beep
    expect(page.locator("#letters td").nth(3)).to_have_text(HOSTILE.decode())
    assert page.locator("#letters img").count() == 0
    assert page.evaluate("window.pwned") is None

    page.locator("#operator").click()  # a user gesture lets the AudioContext play
    publish(broker.port, "campus/s1/button/b1/event", event(2, "press", "police"))
    open_alarms(gateway, 2)
    tick(page)
    expect(rows.nth(1)).to_have_class("c-police state-new flash")
    assert page.evaluate("window.oscillators") > 0

    page.check("#mute")
    before = page.evaluate("window.oscillators")
    publish(broker.port, "campus/s2/button/b2/event", event(3, "press", "fire"))
    open_alarms(gateway, 3)
    tick(page)
    expect(rows).to_have_count(3)
    assert page.evaluate("window.oscillators") == before
    page.screenshot(path="/tmp/console.png", full_page=True)
