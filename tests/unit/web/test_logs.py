"""The Logs tab: the stored message log lines, filtered, escaped, paged, and the live tail's
JSON; the tail script is ours, served from /static, and the CSP allows no other."""

from __future__ import annotations

import re

import pytest

from smimegate.config import Config, MilterConfig
from smimegate.milter.stats import MessageStats, StatsFlusher
from smimegate.store import accounts as store_accounts
from smimegate.store.accounts import accounts_of
from smimegate.web.pages import logs as logs_page
from tests.unit.web.conftest import Site, sign_in
from tests.unit.web.monitoring_data import fill, line


def _queue_ids(html: str) -> list[str]:
    body = html[html.index('<tbody id="log-rows">'):]
    return re.findall(r"<tr><td>[^<]*</td><td>([^<]*)</td>", body)


def test_lines_filtered_and_escaped(site: Site) -> None:
    fill(site.store)
    client = site.client()
    sign_in(client, "otto")
    html = client.get("/logs").text
    assert _queue_ids(html) == ["4Xb2", "4Xb1", "4Xa2", "4Xa1"]
    assert '<option>inbound</option>' in html and '<option>malformed</option>' in html
    # A sender with markup is shown as text, never as markup.
    assert "<script>@x.test" not in html and "&lt;script&gt;@x.test" in html
    assert _queue_ids(client.get("/logs?queue_id=4xa2").text) == ["4Xa2"]
    assert _queue_ids(client.get("/logs?address=dave@partner").text) == ["4Xa2"]
    assert _queue_ids(client.get("/logs?direction=inbound").text) == ["4Xb2", "4Xb1"]
    assert _queue_ids(client.get("/logs?direction=outbound&result=ok").text) == ["4Xa1"]
    none = client.get("/logs?result=tempfail").text
    assert _queue_ids(none) == [] and "No lines match these filters." in none
    assert '<script src="/static/logs.js"></script>' in html
    assert "script-src 'self'" in client.get("/logs").headers["content-security-policy"]


def test_tail_gives_the_lines_after_an_id(site: Site) -> None:
    fill(site.store)
    client = site.client()
    sign_in(client, "alice")
    html = client.get("/logs?direction=outbound").text
    newest = int(re.search(r'data-after="(\d+)"', html).group(1))  # type: ignore[union-attr]
    assert 'data-url="/logs/tail?direction=outbound"' in html
    quiet = client.get(f"/logs/tail?direction=outbound&after={newest}").json()
    assert quiet == {"lines": [], "last": newest}
    config = Config(milter=MilterConfig())
    stats = MessageStats()
    stats.enabled = True
    stats.record(line("4Xc1", "outbound", "ok", "bob@example.com", "x@partner.test"), 0.1)
    stats.record(line("4Xc2", "inbound", "ok", "y@partner.test", "bob@example.com"), 0.1)
    stats.record(line("4Xc3", "outbound", "ok", "bob@example.com", "z@partner.test"), 0.1)
    StatsFlusher(stats, site.store, lambda: config, node="mx2").flush()
    new = client.get(f"/logs/tail?direction=outbound&after={newest}").json()
    assert [r["queue_id"] for r in new["lines"]] == ["4Xc1", "4Xc3"]  # oldest first
    assert new["last"] == new["lines"][-1]["id"] > newest
    assert new["lines"][0]["line"].startswith("4Xc1: smimegate: direction=outbound")
    # Signed out, the tail gets the sign-in redirect, not lines.
    assert site.client().get("/logs/tail").status_code == 303


def test_tail_does_not_keep_the_session_alive(site: Site,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The tail polls by itself: an unattended page must still reach the idle timeout, so
    only the admin's own requests move the session's last use."""
    client = site.client()
    sign_in(client, "alice")
    accounts = accounts_of(site.store)
    (session,) = accounts.sessions("alice")
    later = session.last_seen + 1000
    monkeypatch.setattr(store_accounts, "now", lambda: later)
    assert client.get("/logs/tail").status_code == 200
    assert [s.last_seen for s in accounts.sessions("alice")] == [session.last_seen]
    assert client.get("/logs").status_code == 200
    assert [s.last_seen for s in accounts.sessions("alice")] == [later]


def test_older_pages(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs_page, "PER_PAGE", 3)
    fill(site.store)
    client = site.client()
    sign_in(client, "otto")
    first = client.get("/logs").text
    assert _queue_ids(first) == ["4Xb2", "4Xb1", "4Xa2"]
    older = re.search(r'<a href="(/logs\?before=\d+)">Older</a>', first)
    assert older
    second = client.get(older.group(1)).text
    assert _queue_ids(second) == ["4Xa1"] and 'id="tail"' not in second


def test_tail_script_is_ours(site: Site) -> None:
    answer = site.client().get("/static/logs.js")
    assert answer.status_code == 200
    assert "javascript" in answer.headers["content-type"]
    assert "textContent" in answer.text and "innerHTML" not in answer.text
