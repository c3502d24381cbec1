"""The lists the web pages and the API show, in the objects the CLI's ``--json`` prints and
made by the functions the CLI uses (certview.describe, service.crls, ca.py's and queue.py's
row functions),
so the three front ends cannot drift apart."""

from __future__ import annotations

from typing import Any

from smimegate.cli import certview
from smimegate.cli.ca import _describe as describe_ca
from smimegate.cli.queue import _row as queue_row
from smimegate.pki import authority
from smimegate.pki.anchors import load_anchors
from smimegate.service.crls import crl_rows
from smimegate.service.errors import InvalidInput
from smimegate.store import CertificateRecord, SqlStore

QUEUE_STATUSES = ("pending", "running", "failed")


def certificates(store: SqlStore, email: str | None = None) -> list[dict[str, Any]]:
    """As ``cert list [--email E] --json``."""
    anchors = load_anchors(store)
    return [certview.describe(r, anchors) for r in store.list_certificates(email)]


def describe(store: SqlStore, record: CertificateRecord) -> dict[str, Any]:
    """One certificate as ``cert show --json`` prints it."""
    return certview.describe(record, load_anchors(store))


def roots(store: SqlStore) -> list[dict[str, Any]]:
    """The trusted roots, each as ``cert show --json`` describes a certificate."""
    anchors = load_anchors(store)
    return [certview.describe(r, anchors) for r in store.list_roots()]


def crls(store: SqlStore) -> list[dict[str, Any]]:
    """As ``crl list --json`` (smimegate.service.crls, which the CLI calls too)."""
    return crl_rows(store)


def cas(store: SqlStore) -> list[dict[str, Any]]:
    """As ``ca list --json``."""
    return [describe_ca(authority.load_ca(store, r.name)) for r in store.list_cas()]


def queue(store: SqlStore, status: str | None = None) -> list[dict[str, Any]]:
    """As ``queue list [--status S] --json``. Raises InvalidInput (field "status"),
    MasterKeyError without the master key (payloads are sealed)."""
    if status is not None and status not in QUEUE_STATUSES:
        raise InvalidInput(f"bad status {status!r}: one of {', '.join(QUEUE_STATUSES)}",
                           "status")
    return [queue_row(i) for i in store.list_queue(status)]
