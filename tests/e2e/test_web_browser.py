"""The web admin in a real browser: Debian's Chromium driven by Playwright against a real
``smimegate web`` process on loopback. Signs in, walks every tab, changes a domain property
and sees it in ``smimegate domain show --json``, and checks that a forged CSRF token and an
auditor's change are refused. Screenshots of each page go to tests/artifacts/web/ (ignored by
git); the path is printed.

Playwright's own browser download is not available everywhere, so it drives /usr/bin/chromium
(scripts/install-system-deps.sh installs it with the test packages).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = ROOT / "tests" / "artifacts" / "web"
PASSWORD = "a long enough password"
TABS = ("Dashboard", "Certificates", "Roots", "CRLs", "CA", "SMS", "Settings", "Domains",
        "Users", "Queues", "Logs")


@dataclass
class Server:
    url: str
    config: Path

    def cli(self, *argv: str) -> str:
        done = subprocess.run([sys.executable, "-m", "smimegate", "-c", str(self.config), *argv],
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[str], deadline: float) -> None:
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError("smimegate web did not start listening within the deadline")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("web")
    config = tmp / "smimegate.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{tmp}/store.db"\n'
                      f'master_key_file = "{tmp}/master.key"\n', encoding="utf-8")
    (tmp / "pw").write_text(PASSWORD + "\n", encoding="utf-8")
    port = _free_port()
    site = Server(f"http://127.0.0.1:{port}", config)
    site.cli("db", "init")
    site.cli("admin", "add", "alice", "--role", "admin", "--password-file", str(tmp / "pw"))
    site.cli("admin", "add", "otto", "--role", "auditor", "--password-file", str(tmp / "pw"))
    site.cli("domain", "add", "example.com", "--locality", "internal")
    site.cli("user", "add", "bob@example.com")
    process = subprocess.Popen(
        [sys.executable, "-m", "smimegate", "-c", str(config), "web", "--listen",
         f"127.0.0.1:{port}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_listening(port, process, time.monotonic() + 60)
        yield site
    finally:
        process.terminate()
        process.communicate(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {ARTIFACTS}")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(browser: Browser, server: Server, user: str) -> Page:
    page = browser.new_page()
    page.goto(f"{server.url}/login")
    page.get_by_label("User").fill(user)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{server.url}/dashboard")
    return page


def test_sign_in_and_walk_every_tab(browser: Browser, server: Server) -> None:
    page = browser.new_page()
    page.goto(f"{server.url}/dashboard")
    expect(page).to_have_url(f"{server.url}/login")
    shot(page, "00-login")
    page.get_by_label("User").fill("alice")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("wrong user name, password or code")
    page.close()
    page = sign_in(browser, server, "alice")
    nav = page.get_by_role("navigation", name="Tabs")
    for number, tab in enumerate(TABS, start=1):
        nav.get_by_role("link", name=tab, exact=True).click()
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        assert page.url.startswith(server.url)
        shot(page, f"{number:02d}-{tab.lower()}")
    nav.get_by_role("link", name="Audit").click()
    expect(page.get_by_role("cell", name="domain.add").first).to_be_visible()
    shot(page, "12-audit")
    page.close()


def test_change_a_domain_property_and_the_cli_sees_it(browser: Browser, server: Server) -> None:
    page = sign_in(browser, server, "alice")
    page.get_by_role("navigation", name="Tabs").get_by_role("link", name="Domains").click()
    page.get_by_role("link", name="example.com").click()
    row = page.locator("#p-encrypt_mode")
    row.get_by_label("encrypt_mode").select_option("mandatory")
    row.get_by_role("button", name="Set").click()
    expect(page.get_by_role("status")).to_have_text("encrypt_mode = mandatory at the domain level.")
    expect(page.locator("#p-encrypt_mode td.from")).to_have_text("domain")
    shot(page, "20-domain-changed")
    shown = json.loads(server.cli("domain", "show", "example.com", "--json"))
    assert shown["encrypt_mode"] == {"value": "mandatory", "from": "domain"}
    # A bad value: the CLI's message beside the field, nothing stored.
    page.goto(f"{server.url}/users/bob@example.com")
    phone = page.locator("#p-phone")
    phone.get_by_label("phone").fill("0170 1234")
    phone.get_by_role("button", name="Set").click()
    expect(phone.get_by_role("alert")).to_contain_text("E.164")
    shot(page, "21-bad-value")
    assert json.loads(server.cli("user", "show", "bob@example.com", "--json"))["phone"][
        "from"] == "default"
    page.close()


def test_a_forged_csrf_token_is_refused(browser: Browser, server: Server) -> None:
    page = sign_in(browser, server, "alice")
    page.goto(f"{server.url}/domains/example.com")
    row = page.locator("#p-sign")
    row.locator('input[name="csrf"]').evaluate("input => { input.value = 'forged-token' }")
    row.get_by_label("sign").select_option("no")
    row.get_by_role("button", name="Set").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Refused")
    expect(page.locator("main")).to_contain_text("CSRF token is missing or wrong")
    shot(page, "30-forged-csrf")
    assert json.loads(server.cli("domain", "show", "example.com", "--json"))["sign"][
        "from"] == "default"
    page.close()


def test_an_auditor_is_refused_a_change(browser: Browser, server: Server) -> None:
    page = sign_in(browser, server, "otto")
    page.goto(f"{server.url}/domains/example.com")
    expect(page.locator("#p-locality td.from")).to_have_text("domain")
    assert page.get_by_role("button", name="Set").count() == 0
    shot(page, "40-auditor-domain")
    # The auditor's browser posts a change anyway, with its own valid session and token.
    html = page.content()
    token = re.search(r'name="csrf" value="([^"]+)"', html)
    assert token is not None
    answer = page.request.post(f"{server.url}/domains/example.com", form={
        "csrf": token.group(1), "property": "sign", "value": "no", "action": "set"},
        headers={"origin": server.url})
    assert answer.status == 403 and "auditor" in answer.text()
    page.set_content(answer.text())
    shot(page, "41-auditor-refused")
    assert json.loads(server.cli("domain", "show", "example.com", "--json"))["sign"][
        "from"] == "default"
    page.close()


def _record(server: Server, lines: list[str], worker: int = 0) -> None:
    """Lines as a milter worker records and flushes them (smimegate.milter.stats)."""
    from smimegate.config import Config, MilterConfig
    from smimegate.milter.stats import MessageStats, StatsFlusher
    from smimegate.store import SqlStore

    tmp = server.config.parent
    store = SqlStore.open(f"sqlite:///{tmp}/store.db", tmp / "master.key")
    try:
        config = Config(milter=MilterConfig())
        stats = MessageStats()
        stats.enabled = True
        for n, text in enumerate(lines):
            stats.record(text, 0.01 + 0.2 * n)
        StatsFlusher(stats, store, lambda: config, worker=worker, node="mx1").flush()
    finally:
        store.close()


def _line(queue_id: str, direction: str, result: str, sender: str, to: str) -> str:
    from smimegate import log

    return log.message_line(queue_id, [
        ("direction", direction), ("action", "sign+encrypt"), ("from", f"<{sender}>"),
        ("to", f"<{to}>"), ("delay", 0.05), ("result", result)])


def test_dashboard_chart_and_logs_live_tail(browser: Browser, server: Server) -> None:
    _record(server, [_line("4Xk2q1GZ", "outbound", "ok", "bob@example.com", "c@partner.test"),
                     _line("4Xk2q1HA", "outbound", "refused", "bob@example.com",
                           "d@partner.test"),
                     _line("4Xk2q1HB", "inbound", "ok", "c@partner.test", "bob@example.com")])
    page = sign_in(browser, server, "otto")
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text)
            if "Content Security Policy" in m.text else None)
    page.goto(f"{server.url}/dashboard")
    expect(page.locator("tr.good", has_text="Milter workers")).to_contain_text("1 of 1 up")
    chart = page.get_by_role("img", name=re.compile("Messages per hour"))
    expect(chart).to_be_visible()
    expect(chart.locator("rect")).to_have_count(3)
    shot(page, "12-dashboard")

    page.get_by_role("link", name="Logs", exact=True).click()
    rows = page.locator("#log-rows tr")
    expect(rows).to_have_count(3)
    page.get_by_label("Direction").select_option("outbound")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(2)
    toggle = page.get_by_role("button", name="Live tail: off")
    toggle.click()
    expect(page.locator("#tail-status")).to_contain_text("updated")
    expect(page.get_by_role("button", name="Live tail: on")).to_be_visible()
    # A new outbound line reaches the page by itself; an inbound one does not (filtered).
    _record(server, [_line("4Xk2q1ZZ", "inbound", "ok", "e@partner.test", "bob@example.com"),
                     _line("4Xk2q1NEW", "outbound", "ok", "bob@example.com",
                           '"<b>x</b>"@partner.test')])
    expect(rows.first).to_contain_text("4Xk2q1NEW", timeout=20000)
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text('<b>x</b>')  # shown as text, not markup
    expect(page.locator("#log-rows b")).to_have_count(0)
    shot(page, "13-logs")
    assert violations == []


def test_sign_in_with_a_totp_code(browser: Browser, server: Server) -> None:
    import urllib.parse

    from smimegate.service import totp

    tmp = server.config.parent
    server.cli("admin", "add", "tina", "--role", "admin", "--password-file", str(tmp / "pw"))
    uri = server.cli("admin", "totp", "tina").splitlines()[0]
    secret = urllib.parse.parse_qs(urllib.parse.urlparse(uri).query)["secret"][0]
    page = browser.new_page()
    page.goto(f"{server.url}/login")
    page.get_by_label("User").fill("tina")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("wrong user name, password or code")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Code").fill(totp.code_at(secret, time.time()))
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{server.url}/dashboard")
    page.close()
