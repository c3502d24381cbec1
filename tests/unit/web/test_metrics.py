"""/metrics: Prometheus' text format, read back with prometheus_client's own parser and a
strict line check of ours; a token of either role is required."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

from smimegate.web.metrics import label_value
from tests.unit.web.conftest import Site
from tests.unit.web.monitoring_data import FAILING_URL, fill

# One sample line: name, optional labels with escaped values, a number (exposition format 0.0.4).
_SAMPLE = re.compile(
    r'[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*",?)*\})? '
    r'(-?[0-9.e+]+|\+Inf|-Inf|NaN)')
_COMMENT = re.compile(r"# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+")


def _scrape(site: Site) -> str:
    answer = site.api(site.auditor_token).get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return answer.text


def test_needs_a_token_of_either_role(site: Site) -> None:
    bare = site.api().get("/metrics")
    assert bare.status_code == 401 and bare.headers["www-authenticate"].startswith("Bearer")
    wrong = site.api("sgw_" + "x" * 43).get("/metrics")
    assert wrong.status_code == 401 and "invalid_token" in wrong.headers["www-authenticate"]
    assert site.api(site.admin_token).get("/metrics").status_code == 200
    assert site.api(site.auditor_token).get("/metrics").status_code == 200
    # A signed-in browser session is not enough: /metrics is for scrapers with a token.
    assert site.client().get("/metrics").status_code == 401


def test_exposition_parses_and_says_what_the_store_holds(site: Site) -> None:
    fill(site.store)
    text = _scrape(site)
    assert text.endswith("\n")
    for line in text.splitlines():
        assert _COMMENT.fullmatch(line) or _SAMPLE.fullmatch(line), f"bad line: {line!r}"
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families.values() for s in f.samples}
    assert families["smimegate_messages"].type == "counter"
    assert samples[("smimegate_messages_total",
                    (("direction", "outbound"), ("result", "ok")))] == 1
    assert samples[("smimegate_messages_total",
                    (("direction", "inbound"), ("result", "malformed")))] == 1
    hist = families["smimegate_message_duration_seconds"]
    assert hist.type == "histogram"
    out = {s.labels.get("le"): s.value for s in hist.samples
           if s.labels["direction"] == "outbound" and s.name.endswith("_bucket")}
    assert out["0.025"] == 1 and out["0.5"] == 1 and out["1.0"] == 2 and out["+Inf"] == 2
    assert list(out.values()) == sorted(out.values())  # cumulative
    assert samples[("smimegate_message_duration_seconds_count",
                    (("direction", "outbound"),))] == 2
    assert abs(samples[("smimegate_message_duration_seconds_sum",
                        (("direction", "outbound"),))] - 0.54) < 1e-6
    assert samples[("smimegate_queue_items", (("kind", "sms"), ("status", "pending")))] == 1
    assert samples[("smimegate_crls_stale", ())] == 1
    age = [v for (n, _), v in samples.items() if n == "smimegate_crl_age_seconds"]
    assert len(age) == 1 and 10 * 86400 - 120 <= age[0] <= 10 * 86400 + 120
    assert samples[("smimegate_crl_download_failures", (("url", FAILING_URL),))] == 1
    certs = {dict(k).get("state"): v for (n, k), v in samples.items()
             if n == "smimegate_certificates"}
    assert certs == {"all": 4, "expired": 0, "expiring_7d": 1, "expiring_30d": 2}
    assert samples[("smimegate_milter_workers_up", ())] == 2


def test_label_values_are_escaped() -> None:
    assert label_value('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
