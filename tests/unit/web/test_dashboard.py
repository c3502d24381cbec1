"""The Dashboard: workers up from their heartbeats, store and directory, expiring
certificates, stale and failing CRLs, queue depths, the messages-per-hour SVG chart (no
script, no inline style), without reading any certificate or CRL bytes."""

from __future__ import annotations

import re

import pytest

from smimegate.store import SqlStore
from smimegate.web.chart import hourly
from tests.unit.web.conftest import Site, sign_in
from tests.unit.web.monitoring_data import FAILING_URL, fill


def _check(html: str, label: str) -> tuple[str, str]:
    row = re.search(rf'<tr class="(good|bad)"><th scope="row">{re.escape(label)}</th>\s*'
                    r'<td><span class="state">[^<]*</span> ([^<]*)</td>', html)
    assert row, f"no check {label!r} in the page"
    return row.group(1), row.group(2)


def test_empty_store_says_so(site: Site) -> None:
    client = site.client()
    sign_in(client, "otto")
    html = client.get("/dashboard").text
    assert _check(html, "Milter workers")[0] == "bad"
    assert "none has reported" in _check(html, "Milter workers")[1]
    assert _check(html, "Directory (LDAP)") == ("good", "not configured")
    assert "No messages counted in the last 24 hours." in html


def test_dashboard_shows_what_needs_attention(site: Site,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    fill(site.store)

    def no_bytes(*args: object, **kwargs: object) -> None:
        raise AssertionError("the dashboard must not read every certificate or CRL")

    # The dashboard counts with small queries: reading every DER would fail here.
    for name in ("list_certificates", "list_crls", "get_crls"):
        monkeypatch.setattr(SqlStore, name, no_bytes)
    client = site.client()
    sign_in(client, "otto")
    answer = client.get("/dashboard")
    assert answer.status_code == 200, answer.text
    html = answer.text
    assert _check(html, "Milter workers") == ("good", "2 of 2 up")
    assert _check(html, "Store")[0] == "good"
    assert _check(html, "Certificates expiring within 7 days") == ("bad", "1")
    assert _check(html, "Certificates expiring within 30 days")[1] == "2"
    assert _check(html, "CRLs past their next update") == ("bad", "1 of 1")
    assert _check(html, "CRL URLs failing to download") == ("bad", "1")
    assert _check(html, "Delivery queue") == ("good", "1 pending, 0 running, 0 failed")
    assert FAILING_URL in html and "HTTP 404" in html and "CN=Partner CA" in html
    svg = html[html.index("<svg"):html.index("</svg>")]
    assert len(re.findall(r"<rect ", svg)) == 4  # one segment per series, this hour
    assert "outbound ok" in html and "inbound malformed" in html
    assert re.search(r"<title>\d\d:00 UTC: 1 outbound refused</title>", svg)
    # CSP-safe: no script, no inline style anywhere on the page.
    assert "<script" not in html and "style=" not in html
    assert "script-src 'self'" in answer.headers["content-security-policy"]


def test_chart_geometry_stacks_within_the_plot() -> None:
    hours = [3600 * h for h in range(24)]
    series = {("outbound", "ok"): [0] * 23 + [6], ("inbound", "ok"): [0] * 23 + [2],
              ("outbound", "refused"): [1] + [0] * 23}
    chart = hourly(hours, series)
    assert chart.peak == 8 and chart.total == 9
    last = [r for r in chart.bars if r.x == max(b.x for b in chart.bars)]
    assert len(last) == 2
    top = min(r.y for r in last)
    bottom = max(r.y + r.height for r in last)
    assert abs(top - 8) < 0.2 and abs(bottom - (chart.height - 22)) < 0.2
    fills = dict((name, fill) for fill, name in chart.legend)
    assert fills["outbound refused"] in ("#D55E00", "#E69F00")
    assert [label for _, label in chart.ticks] == ["0", "4", "8"]


def test_directory_unreachable_is_named(tmp_path: object) -> None:

    from smimegate.config import Config, LdapConfig
    from smimegate.service.monitoring import directory_status
    from tests.helpers.ports import free_port

    port = free_port()  # nobody listens on it
    config = Config(ldap=LdapConfig(enabled=True, urls=(f"ldap://127.0.0.1:{port}",),
                                    base_dn="dc=example,dc=com"))
    status = directory_status(config)
    assert status.startswith("unreachable: "), status
