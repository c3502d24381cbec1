"""``GET /metrics``: the gateway's figures in Prometheus' text exposition format (version
0.0.4: ``# HELP``/``# TYPE`` lines, then ``name{label="value"} number``).

Access: an API token of either role (``smimegate admin token NAME --role auditor`` makes one
that can read only), as ``Authorization: Bearer TOKEN`` (Prometheus' ``authorization``
scrape option) — the same check as the REST API: none is 401, an unknown one 401. The figures
name mail addresses nowhere, but CRL URLs and host names are still not for everyone.

Every figure is read from the store (smimegate.service.monitoring), so any ``smimegate web``
of a cluster sharing PostgreSQL exports the sums of every node's workers; the counters
(``_total``, the histogram) only grow, since the per-hour rows they sum are never pruned.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from smimegate.milter.stats import LABELS
from smimegate.service import accounts, monitoring
from smimegate.store import StoreError, StoreUnavailable
from smimegate.store.operations import CrlSummary, operations_of
from smimegate.web.pages.base import Web
from smimegate.web.security import client_address, store_failure

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def label_value(text: str) -> str:
    """A label value with backslash, double quote and line feed escaped (the format's only
    escapes)."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{label_value(v)}"' for k, v in pairs)
    return f"{{{inner}}}" if inner else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if isinstance(value, float) else str(value)


class Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, doc: str) -> None:
        self.lines += [f"# HELP {name} {doc}", f"# TYPE {name} {kind}"]

    def sample(self, name: str, value: float, labels: Iterable[tuple[str, str]] = ()) -> None:
        self.lines.append(f"{name}{_labels(labels)} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render(web: Web) -> str:
    """The exposition. Raises StoreError."""
    store = web.store
    ops = operations_of(store)
    view = monitoring.overview(store)
    out = Exposition()

    out.family("smimegate_up", "gauge", "1: the store answered this scrape.")
    out.sample("smimegate_up", 1)

    out.family("smimegate_messages_total", "counter",
               "Messages the milter workers finished, by direction and result.")
    sums: dict[str, int] = {}
    for direction, result, messages, duration_us in ops.totals():
        out.sample("smimegate_messages_total", messages,
                   (("direction", direction), ("result", result)))
        sums[direction] = sums.get(direction, 0) + duration_us

    out.family("smimegate_message_duration_seconds", "histogram",
               "Time the gateway took to decide and rewrite a message at end of data.")
    buckets: dict[str, dict[str, int]] = {}
    for direction, le, messages in ops.latency_totals():
        buckets.setdefault(direction, {})[le] = messages
    for direction, counts in sorted(buckets.items()):
        running = 0
        for le in LABELS:  # cumulative, in bound order, ending with +Inf
            running += counts.get(le, 0)
            out.sample("smimegate_message_duration_seconds_bucket", running,
                       (("direction", direction), ("le", le)))
        out.sample("smimegate_message_duration_seconds_sum", sums.get(direction, 0) / 1e6,
                   (("direction", direction),))
        out.sample("smimegate_message_duration_seconds_count", running,
                   (("direction", direction),))

    out.family("smimegate_milter_workers_up", "gauge",
               "Milter workers whose heartbeat is younger than three flush intervals.")
    out.sample("smimegate_milter_workers_up", view.workers_up)
    out.family("smimegate_milter_worker_last_seen_timestamp_seconds", "gauge",
               "When each milter worker last wrote its counters (Unix time).")
    for worker in view.workers:
        out.sample("smimegate_milter_worker_last_seen_timestamp_seconds", worker.seen,
                   (("node", worker.node), ("worker", str(worker.worker))))

    out.family("smimegate_queue_items", "gauge",
               "Items of the delivery queue (PKCS#12 mail, SMS), by kind and status.")
    for (kind, status), n in sorted(view.queue.items()):
        out.sample("smimegate_queue_items", n, (("kind", kind), ("status", status)))

    out.family("smimegate_crl_age_seconds", "gauge",
               "Seconds since the thisUpdate of the newest stored CRL of each issuer.")
    out.family("smimegate_crl_next_update_timestamp_seconds", "gauge",
               "nextUpdate of the newest stored CRL of each issuer (Unix time).")
    newest: dict[str, CrlSummary] = {}
    for crl in view.crls:
        if crl.issuer not in newest or crl.this_update > newest[crl.issuer].this_update:
            newest[crl.issuer] = crl
    for issuer, crl in sorted(newest.items()):
        out.sample("smimegate_crl_age_seconds", max(0, view.at - crl.this_update),
                   (("issuer", issuer),))
        if crl.next_update is not None:
            out.sample("smimegate_crl_next_update_timestamp_seconds", crl.next_update,
                       (("issuer", issuer),))
    out.family("smimegate_crls_stale", "gauge", "Stored CRLs past their nextUpdate.")
    out.sample("smimegate_crls_stale", len(view.stale_crls))
    out.family("smimegate_crl_download_failures", "gauge",
               "Consecutive failed downloads of each CRL distribution point URL (0: the last "
               "one worked).")
    for download in view.downloads:
        out.sample("smimegate_crl_download_failures", download.failures,
                   (("url", download.url),))

    out.family("smimegate_certificates", "gauge",
               "Stored certificates: all, expired, and still valid but expiring within 7 or "
               "30 days.")
    certs = view.certificates
    for state, key in (("all", "total"), ("expired", "expired"), ("expiring_7d", "days7"),
                       ("expiring_30d", "days30")):
        out.sample("smimegate_certificates", certs[key], (("state", state),))
    return out.text()


async def metrics(request: Request) -> Response:
    return await run_in_threadpool(_metrics, request.app.state.web, request)


def _plain(status: int, text: str, **headers: str) -> Response:
    return PlainTextResponse(f"{text}\n", status_code=status, headers=headers or None)


def _metrics(web: Web, request: Request) -> Response:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    challenge = 'Bearer realm="smimegate"'
    if scheme.lower() != "bearer" or not token.strip():
        return _plain(401, "an Authorization: Bearer TOKEN header is required "
                           "(`smimegate admin token NAME --role auditor`)",
                      **{"www-authenticate": challenge})
    try:
        actor = accounts.token_actor(web.store, token.strip(), client_address(request))
    except StoreError as exc:
        return _plain(503 if isinstance(exc, StoreUnavailable) else 409, store_failure(exc))
    if actor is None:
        return _plain(401, "unknown or revoked token", **{
            "www-authenticate": f'{challenge}, error="invalid_token"'})
    try:
        body = render(web)
    except StoreUnavailable as exc:
        return _plain(503, str(exc))
    except StoreError as exc:
        return _plain(409, str(exc))
    return Response(body, media_type=None, headers={"content-type": CONTENT_TYPE})
