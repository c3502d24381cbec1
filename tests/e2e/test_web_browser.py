"""The web admin in a real browser: Debian's Chromium driven by Playwright against a real
``smimegate web`` process on loopback, beside a real ``smimegate milter`` process on the same
store. Signs in, walks every tab, issues a certificate through the Certificates form and the
milter encrypts to it, changes a domain property and sees it in ``smimegate domain show --json``
and in what the milter does (encrypt_mode mandatory: a recipient without certificate refused),
asks the Explain page, and checks that a forged CSRF token and an auditor's change are refused.
Screenshots of every page go to tests/artifacts/web/ (ignored by git); the path is printed.

Playwright's own browser download is not available everywhere, so it drives /usr/bin/chromium
(scripts/install-system-deps.sh installs it with the test packages).
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from smimegate.milter.entity import message_entity
from smimegate.milter.inbound import first_recipients
from smimegate.milter.services import POLICY_CHECK
from tests.conftest import ROOT
from tests.helpers.ports import free_port
from tests.milter import client as mc
from tests.milter.client import MilterClient
from tests.milter.daemon import milter_argv, start

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = ROOT / "tests" / "artifacts" / "web"
PASSWORD = "a long enough password"
TABS = ("Dashboard", "Certificates", "Roots", "CRLs", "CA", "SMS", "Settings", "Domains",
        "Users", "Explain", "Queues", "Logs")


@dataclass
class Server:
    url: str
    config: Path
    milter: str  # the milter's socket spec; the milter process runs on the same store

    def cli(self, *argv: str) -> str:
        done = subprocess.run([sys.executable, "-m", "smimegate", "-c", str(self.config), *argv],
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout



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
    spec = f"inet:{free_port()}@127.0.0.1"
    config.write_text(f'[store]\nurl = "sqlite:///{tmp}/store.db"\n'
                      f'master_key_file = "{tmp}/master.key"\n'
                      f'[milter]\nsocket = "{spec}"\nworkers = 1\nlog = "stdout"\n'
                      f'reinject_secret_file = "{tmp}/reinject.key"\n', encoding="utf-8")
    (tmp / "pw").write_text(PASSWORD + "\n", encoding="utf-8")
    port = free_port()
    site = Server(f"http://127.0.0.1:{port}", config, spec)
    site.cli("db", "init")
    site.cli("ca", "create", "--root-cn", "Browser Test Root", "--intermediate-cn",
             "Browser Test CA", "--default")
    site.cli("domain", "add", "partner.test", "--locality", "external")
    site.cli("admin", "add", "alice", "--role", "admin", "--password-file", str(tmp / "pw"))
    site.cli("admin", "add", "otto", "--role", "auditor", "--password-file", str(tmp / "pw"))
    site.cli("domain", "add", "example.com", "--locality", "internal")
    site.cli("user", "add", "bob@example.com")
    process = subprocess.Popen(
        [sys.executable, "-m", "smimegate", "-c", str(config), "web", "--listen",
         f"127.0.0.1:{port}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    milter = None
    try:
        _wait_listening(port, process, time.monotonic() + 60)
        milter = start(milter_argv(config), tmp / "milter.log", spec, timeout=60)
        yield site
    finally:
        if milter is not None:
            milter.stop(signal.SIGTERM, timeout=30)
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
    shot(page, f"{len(TABS) + 1:02d}-audit")
    nav.get_by_role("link", name="Admins").click()
    expect(page.get_by_role("cell", name="otto").first).to_be_visible()
    shot(page, f"{len(TABS) + 2:02d}-admins")
    page.get_by_role("link", name=re.compile(r"^alice \(admin\)$")).click()
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    shot(page, f"{len(TABS) + 3:02d}-account")
    page.close()


def set_encrypt_mode_mandatory(browser: Browser, server: Server, domain: str) -> Page:
    """Sign in as alice, open the domain's page from the Domains tab and set encrypt_mode =
    mandatory there; returns the page, showing the result."""
    page = sign_in(browser, server, "alice")
    page.get_by_role("navigation", name="Tabs").get_by_role("link", name="Domains").click()
    page.get_by_role("link", name=domain).click()
    row = page.locator("#p-encrypt_mode")
    row.get_by_label("encrypt_mode").select_option("mandatory")
    row.get_by_role("button", name="Set").click()
    expect(page.get_by_role("status")).to_have_text("encrypt_mode = mandatory at the domain level.")
    return page


def test_change_a_domain_property_and_the_cli_sees_it(browser: Browser, server: Server) -> None:
    page = set_encrypt_mode_mandatory(browser, server, "example.com")
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
    shot(page, "16-dashboard-chart")

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
    shot(page, "17-logs-tail")
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


# -- the milter on the same store follows what the browser changed ---------------------------

def _send(server: Server, rcpt: str, queue_id: str) -> tuple[mc.MessageResult, list[
        tuple[str, str]], bytes]:
    """One outbound message from bob (SMTP AUTH) to rcpt through the real milter: its result,
    and the headers and body as the MTA would deliver them."""
    headers = [("From", "bob@example.com"), ("To", rcpt), ("Subject", "quarterly figures"),
               ("MIME-Version", "1.0"), ("Content-Type", "text/plain; charset=us-ascii")]
    body = b"The figures are attached.\r\n"
    with MilterClient(server.milter).open() as c:
        c.negotiate()
        c.connect(hostname="laptop.example.com", address="192.0.2.7")
        c.helo("laptop.example.com")
        result = c.message("bob@example.com", [rcpt], headers, body, queue_id=queue_id,
                           auth_authen="bob")
    if result.eom is None:
        return result, headers, body
    new_headers, new_body = mc.apply_actions(headers, body, result.eom)
    return result, new_headers, new_body


def _serials(server: Server, email: str) -> list[int]:
    listed = json.loads(server.cli("cert", "list", "--email", email, "--json"))
    return [int(c["serial"], 16) for c in listed]


def test_issue_a_certificate_and_the_milter_encrypts_to_it(browser: Browser,
                                                           server: Server) -> None:
    carol = "carol@partner.test"
    page = sign_in(browser, server, "alice")
    page.get_by_role("navigation", name="Tabs").get_by_role("link", name="Certificates").click()
    issue = page.locator("form", has=page.get_by_role("button", name="Issue", exact=True))
    issue.get_by_label("Email", exact=True).fill(carol)
    issue.get_by_label("Key type").select_option("rsa2048")
    issue.get_by_role("button", name="Issue", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text(carol)
    link = page.get_by_role("link", name=carol)
    expect(link).to_be_visible()
    shot(page, "50-certificate-issued")
    link.click()
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    expect(page.locator("main")).to_contain_text("Browser Test CA")
    shot(page, "51-certificate-detail")
    page.close()
    (serial,) = _serials(server, carol)
    result, headers, body = _send(server, carol, "4BRWS1")
    assert result.eom is not None and result.eom.reply.cmd == mc.SMFIR_CONTINUE
    content_type = next(v for n, v in headers if n.lower() == "content-type")
    assert "application/pkcs7-mime" in content_type
    recipients = first_recipients(message_entity(headers, body))
    assert recipients is not None
    assert [r.recipient_id.serial for r in recipients] == [serial]


def test_a_domain_property_changed_in_the_browser_reaches_the_milter(
        browser: Browser, server: Server) -> None:
    dave = "dave@partner.test"  # no certificate
    before, _, body = _send(server, dave, "4BRWS2")
    assert before.eom is not None and before.eom.reply.cmd == mc.SMFIR_CONTINUE
    assert body == b"The figures are attached.\r\n"  # allow: sent in clear
    page = set_encrypt_mode_mandatory(browser, server, "partner.test")
    shot(page, "52-domain-mandatory")
    page.close()
    # The milter drops its cached policy rows once it sees the store's shared generation move,
    # which it reads every POLICY_CHECK seconds (smimegate.milter.services): poll until it
    # refuses, with a deadline well past that (and short of the cache's POLICY_TTL).
    deadline = time.monotonic() + POLICY_CHECK + 10
    attempt = 0
    while True:
        attempt += 1
        after, _, _ = _send(server, dave, f"4BRWS3{attempt:03d}")
        refused = after.rcpts[0]
        if refused is not None and refused.code == "550":
            break
        assert time.monotonic() < deadline, "the milter never used encrypt_mode = mandatory"
        time.sleep(0.5)
    assert refused.xcode == "5.7.1" and dave in (refused.text or "")
    assert after.eom is None  # nothing was sent


def test_the_explain_page_gives_the_milters_decision(browser: Browser, server: Server) -> None:
    erin, frank = "erin@partner.test", "frank@other.test"
    server.cli("cert", "issue", erin)
    (serial,) = _serials(server, erin)
    page = sign_in(browser, server, "otto")  # an auditor may ask: it changes nothing
    page.get_by_role("navigation", name="Tabs").get_by_role("link", name="Explain").click()
    shot(page, "60-explain-form")
    page.get_by_label("Sender").fill("bob@example.com")
    page.get_by_label("Recipients").fill(f"{erin}\n{frank}")
    page.get_by_label("Subject").fill("[encrypt] quarterly figures")
    page.get_by_role("button", name="Explain").click()
    expect(page.locator("#direction")).to_have_text("outbound")
    # The trigger asks for encryption; frank has no certificate, so the milter would refuse.
    expect(page.locator("#verdict")).to_contain_text("refused: 550 5.7.1 <frank@other.test>")
    erin_row = page.locator("tr", has_text=erin).first
    expect(erin_row.locator("td.action")).to_contain_text("encrypt")
    expect(erin_row.locator("li.used")).to_contain_text(f"serial {serial:X}")
    frank_row = page.locator("tr", has_text=frank).first
    expect(frank_row.locator("td.action")).to_have_text("refuse")
    expect(page.get_by_role("table").filter(has_text="Sender bob@example.com")
           .get_by_role("row", name=re.compile("^locality"))).to_contain_text("domain")
    shot(page, "61-explain-answer")
    # The same answer as the CLI gives.
    printed = json.loads(server.cli("policy", "explain", "bob@example.com", erin, frank,
                                    "--subject", "[encrypt] quarterly figures", "--json"))
    assert printed["refusal"].startswith("550 5.7.1 <frank@other.test>")
    page.close()
