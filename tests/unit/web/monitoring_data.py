"""A store with something to show on the Dashboard, Logs and /metrics: messages counted by
two workers, a stale CRL, a failing CRL URL, certificates expiring soon, queued items."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from smimegate import log
from smimegate.config import Config, MilterConfig
from smimegate.delivery.queue import SMS, SmsJob
from smimegate.milter.stats import MessageStats, StatsFlusher
from smimegate.pki.fetch import FetchOutcome, FetchReport
from smimegate.service.monitoring import record_crl_report
from smimegate.store import SqlStore
from tests.helpers.testpki import TestCA

FAILING_URL = "http://crl.partner.test/ca.crl"


def line(queue_id: str, direction: str, result: str, sender: str, to: str) -> str:
    return log.message_line(queue_id, [
        ("direction", direction), ("action", "sign"), ("from", f"<{sender}>"),
        ("to", f"<{to}>"), ("delay", 0.05), ("result", result)])


def fill(store: SqlStore) -> TestCA:
    config = Config(milter=MilterConfig(stats_interval=30))
    for worker, lines in enumerate((
        [line("4Xa1", "outbound", "ok", "bob@example.com", "carol@partner.test"),
         line("4Xa2", "outbound", "refused", "bob@example.com", "dave@partner.test")],
        [line("4Xb1", "inbound", "ok", "carol@partner.test", "bob@example.com"),
         line("4Xb2", "inbound", "malformed", 'evil"<script>@x.test', "bob@example.com")],
    )):
        stats = MessageStats()
        stats.enabled = True
        for n, text in enumerate(lines):
            stats.record(text, 0.02 + n * 0.5)
        StatsFlusher(stats, store, lambda: config, worker=worker, node="mx1").flush()
    ca = TestCA("Partner CA")
    store.add_root(ca.cert)
    store.add_certificate(ca.issue("soon@partner.test", days=5).cert)
    store.add_certificate(ca.issue("later@partner.test", days=20).cert)
    store.add_certificate(ca.issue("fine@partner.test", days=200).cert)
    # Now, not at import: the test that reads the CRL age may run minutes after collection.
    now = dt.datetime.now(dt.UTC)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
           .last_update(now - dt.timedelta(days=10)).next_update(now - dt.timedelta(days=3))
           .add_extension(x509.CRLNumber(7), critical=False)
           .sign(ca.key, hashes.SHA256()))
    store.add_crl(crl, source="test", verified=True)
    record_crl_report(store, FetchReport((FetchOutcome(FAILING_URL, "failed", "HTTP 404"),)))
    store.enqueue(SMS, SmsJob("dave@partner.test", "+4917099887766", "pw").payload())
    return ca
